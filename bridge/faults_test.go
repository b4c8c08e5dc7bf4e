package bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/smartcarsim"

	"github.com/sirupsen/logrus"

	"github.com/smartcar2mqtt/smartcar2mqtt/discovery"
	"github.com/smartcar2mqtt/smartcar2mqtt/smartcar"
)

// The fault suite: the broker dies, Smartcar is down, slow or failing, DATA_DIR
// refuses writes. In each case the bridge must stay up, say what went wrong, and
// work again by itself once the fault is gone, without spending calls twice.

func waitSimRequest(t *testing.T, sim *smartcarsim.Simulator, what string, match func(smartcarsim.Request) bool) smartcarsim.Request {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	r, err := sim.WaitRequest(ctx, match)
	if err != nil {
		t.Fatalf("waiting for %s at the simulator: %v", what, err)
	}
	return r
}

// neverOffline fails the test if the bridge or the Tesla was ever announced offline
// in msgs: a Smartcar or disk fault is the car's problem to report, not a reason to
// take the entities away.
func neverOffline(t *testing.T, msgs []message) {
	t.Helper()
	for _, m := range msgs {
		if (m.Topic == discovery.StatusTopic(base) || m.Topic == teslaTopics.Availability) && m.Payload == discovery.PayloadOffline {
			t.Errorf("%s went offline during the fault", m.Topic)
		}
	}
}

// TestBrokerRestartReconnectsWithoutRepeatingCommands kills mosquitto (persistence off)
// while a door command is in flight and starts it again on the same port. The bridge
// must reconnect by itself, subscribe again, re-announce itself (the new broker holds
// nothing retained, so everything seen afterwards was published again), and must not
// send the command it had already received a second time.
func TestBrokerRestartReconnectsWithoutRepeatingCommands(t *testing.T) {
	e := newEnv(t, "mosquitto", smartcarsim.Options{})
	// The OPEN is held at Smartcar's front until the broker is back: mid-command
	// however long the restart takes (a fixed car latency could end first).
	front := e.throughFront()
	e.startBridge()
	user := e.recorder(base + "/#")
	ready(user, "closed")

	release := front.holdDoors()
	defer release()
	user.publish(teslaTopics.Command, false, "OPEN")
	front.waitDoor(t)
	e.mosquitto.Stop() // SIGKILL, mid-command: no will, no goodbye
	e.mosquitto.Start()
	release()

	// The restarted broker is empty: online, discovery and the state are here only
	// because the bridge published them again after reconnecting.
	after := e.recorder(base+"/#", prefix+"/#")
	after.waitPayload(0, discovery.StatusTopic(base), discovery.PayloadOnline)
	after.waitFor("discovery published again", func(ms []message) bool {
		m, ok := findTopic(ms, discovery.ConfigTopic(prefix, tesla))
		return ok && hasCover(t, m.Payload)
	})
	n := after.waitPayload(0, teslaTopics.State, "open")

	// A refresh is taken after any command queued before it, so once its read is
	// published, a replay of the OPEN would have shown as a second door call.
	pressed := time.Now()
	after.publish(teslaTopics.Refresh, false, "")
	after.waitAttributes(n, teslaTopics.Attributes, readSince(pressed))
	if calls := e.doorCalls(); len(calls) != 1 {
		t.Fatalf("the OPEN received before the outage made %d door calls, want 1", len(calls))
	}

	// The subscriptions are back: the next commands work, one call each.
	after.publish(teslaTopics.Command, false, "CLOSE")
	n = after.waitPayload(n, teslaTopics.State, "closed")
	after.publish(teslaTopics.Command, false, "OPEN")
	after.waitPayload(n, teslaTopics.State, "open")
	calls := e.doorCalls()
	if len(calls) != 3 {
		t.Fatalf("after the restart, CLOSE and OPEN made %d door calls in all, want 1+2", len(calls))
	}
	checkDoorCall(t, calls[1], "CLOSE")
	checkDoorCall(t, calls[2], "OPEN")
	if !e.sim.ChargePortOpen(tesla) {
		t.Error("the simulated door is not open")
	}
	neverOffline(t, mustMessages(after))
}

// flakySmartcar stands in front of the simulator on a fixed address that can go away
// (connection refused) and come back, and can hold requests: door commands until
// the test releases them, or every request until the client gives up.
type flakySmartcar struct {
	t   *testing.T
	sim http.Handler
	// addr is fixed once listening, so that up listens again where the bridge dials.
	addr string
	// stalled: a request arriving now is never answered; it ends when the client
	// gives up. Slower than any timeout, without racing a timer of the test's own.
	stalled atomic.Bool
	doors   atomic.Int32 // door commands that reached the front, stalled ones included
	door    chan string  // the path of each door command arriving
	held    atomic.Pointer[chan struct{}]

	mu  sync.Mutex
	srv *http.Server
}

// throughFront puts a flakySmartcar between the bridge (started after) and the
// simulator, and returns it.
func (e *env) throughFront() *flakySmartcar {
	f := newFlakySmartcar(e.t, e.sim)
	e.api, e.token = f.url()+"/v2.0", f.url()+"/oauth/token"
	return f
}

func newFlakySmartcar(t *testing.T, sim http.Handler) *flakySmartcar {
	f := &flakySmartcar{t: t, sim: sim, addr: "127.0.0.1:0", door: make(chan string, 1000)}
	f.up()
	t.Cleanup(f.down)
	return f
}

func (f *flakySmartcar) url() string { return "http://" + f.addr }

// up listens again on the same port.
func (f *flakySmartcar) up() {
	f.t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		f.t.Fatalf("Smartcar front: listen on %s: %v", f.addr, err)
	}
	f.addr = ln.Addr().String()
	f.srv = &http.Server{Handler: f, ReadHeaderTimeout: 10 * time.Second}
	go f.srv.Serve(ln)
}

// down closes the listener and every connection: the next dial is refused.
func (f *flakySmartcar) down() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.srv != nil {
		f.srv.Close()
		f.srv = nil
	}
}

func (f *flakySmartcar) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/charge/charge_port_door") {
		f.doors.Add(1)
		select {
		case f.door <- r.URL.Path:
		default:
		}
		if held := f.held.Load(); held != nil {
			select {
			case <-*held:
			case <-r.Context().Done():
				return
			}
		}
	}
	if f.stalled.Load() {
		<-r.Context().Done()
		return // the client gave up: Smartcar never answered
	}
	f.sim.ServeHTTP(w, r)
}

// holdDoors keeps door commands from reaching the simulator until release: a car
// that takes exactly as long as the test needs.
func (f *flakySmartcar) holdDoors() (release func()) {
	ch := make(chan struct{})
	f.held.Store(&ch)
	var once sync.Once
	return func() {
		once.Do(func() {
			f.held.Store(nil)
			close(ch)
		})
	}
}

// waitDoor waits for the next door command to reach the front and returns its path.
func (f *flakySmartcar) waitDoor(t *testing.T) string {
	t.Helper()
	select {
	case path := <-f.door:
		return path
	case <-time.After(15 * time.Second):
		t.Fatal("no door command reached Smartcar within 15 s")
		return ""
	}
}

// newFlakyEnv is an env whose bridge reaches the simulator through a flakySmartcar,
// with a short SMARTCAR_TIMEOUT and quick retries.
func newFlakyEnv(t *testing.T, timeout time.Duration) (*env, *flakySmartcar) {
	e := newEnv(t, "mochi", smartcarsim.Options{})
	f := e.throughFront()
	e.clientOpts = []smartcar.Option{smartcar.WithTimeout(timeout), smartcar.WithBackoff(10 * time.Millisecond)}
	return e, f
}

// errorOf returns the attributes' error object.
func errorOf(a map[string]any) map[string]any {
	m, _ := a["error"].(map[string]any)
	return m
}

func hasErrorType(typ string) func(map[string]any) bool {
	return func(a map[string]any) bool { return errorOf(a)["type"] == typ }
}

func chargeReads(e *env) int {
	n := 0
	for _, r := range e.sim.Requests() {
		if r.Method == http.MethodGet && strings.HasSuffix(r.Path, "/"+tesla+"/tesla/charge") {
			n++
		}
	}
	return n
}

func TestSmartcarDownThenBack(t *testing.T) {
	e, f := newFlakyEnv(t, 5*time.Second)
	e.startBridge()
	user := e.recorder(base + "/#")
	n := ready(user, "closed")

	f.down()
	user.publish(teslaTopics.Refresh, false, "")
	attrs := user.waitAttributes(n, teslaTopics.Attributes, hasErrorType("NETWORK"))
	if errorOf(attrs)["code"] != "CONNECTION_REFUSED" || !strings.Contains(fmt.Sprint(errorOf(attrs)["description"]), "refused") {
		t.Errorf("a refresh with Smartcar down: attributes %v, want a NETWORK error saying the connection was refused", attrs)
	}
	n = user.count()
	user.publish(teslaTopics.Command, false, "OPEN")
	opening := user.waitPayload(n, teslaTopics.State, "opening")
	attrs = user.waitAttributes(opening, teslaTopics.Attributes, hasErrorType("NETWORK"))
	if attrs["last_command"] != "OPEN" || attrs["last_command_result"] != "error" {
		t.Errorf("an OPEN with Smartcar down: attributes %v", attrs)
	}
	user.waitPayload(opening, teslaTopics.State, "closed") // back to what it was
	user.waitPayload(0, teslaTopics.LastError, "NETWORK:CONNECTION_REFUSED")

	f.up()
	waitRead(user, user, teslaTopics)
	n = user.count()
	user.publish(teslaTopics.Command, false, "OPEN")
	user.waitPayload(n, teslaTopics.State, "open")
	if calls := e.doorCalls(); len(calls) != 1 {
		t.Errorf("%d door calls reached Smartcar, want the 1 made once it was back", len(calls))
	}
	if got := f.doors.Load(); got != 1 {
		t.Errorf("%d door calls reached the front, want 1: the refused one cannot have arrived", got)
	}
	neverOffline(t, mustMessages(user))
}

func TestSmartcarSlowerThanTheTimeout(t *testing.T) {
	e, f := newFlakyEnv(t, time.Second)
	e.startBridge()
	user := e.recorder(base + "/#")
	n := ready(user, "closed")
	reads := chargeReads(e)

	f.stalled.Store(true) // slower than SMARTCAR_TIMEOUT, however long that is
	user.publish(teslaTopics.Command, false, "OPEN")
	opening := user.waitPayload(n, teslaTopics.State, "opening")
	attrs := user.waitAttributes(opening, teslaTopics.Attributes, hasErrorType("TIMEOUT"))
	if attrs["last_command"] != "OPEN" || attrs["last_command_result"] != "unknown" || errorOf(attrs)["code"] != "OUTCOME_UNKNOWN" {
		t.Errorf("a timed-out OPEN: attributes %v", attrs)
	}
	// The car may have acted: the bridge reads instead of re-sending; the read times
	// out too while Smartcar is slow.
	user.waitAttributes(opening, teslaTopics.Attributes, func(a map[string]any) bool { return hasErrorType("TIMEOUT")(a) && errorOf(a)["code"] == "REQUEST" })
	if got := f.doors.Load(); got != 1 {
		t.Fatalf("a timed-out command was sent %d times, want 1", got)
	}
	user.waitPayload(opening, teslaTopics.State, "closed")

	f.stalled.Store(false) // requests still stalled stay so until the bridge gives up
	n = user.count()
	pressed := time.Now()
	user.publish(teslaTopics.Refresh, false, "")
	user.waitAttributes(n, teslaTopics.Attributes, readSince(pressed))
	user.publish(teslaTopics.Command, false, "OPEN")
	user.waitPayload(n, teslaTopics.State, "open")
	if got := f.doors.Load(); got != 2 {
		t.Errorf("%d door calls in all, want the timed-out one and the one after", got)
	}
	if got := chargeReads(e) - reads; got != 1 {
		t.Errorf("%d reads reached the simulator once it was fast again, want the 1 refresh", got)
	}
	neverOffline(t, mustMessages(user))
}

func TestSmartcarFailingForAWhile(t *testing.T) {
	e, _ := newFlakyEnv(t, 5*time.Second)
	e.startBridge()
	user := e.recorder(base + "/#")
	n := ready(user, "closed")

	reads := chargeReads(e)
	e.sim.InjectFault(smartcarsim.Fault{Method: "GET", Path: "/tesla/charge", Status: 500, Times: -1})
	e.sim.InjectFault(smartcarsim.Fault{Method: "POST", Path: "/charge/charge_port_door", Status: 502, Times: -1})

	user.publish(teslaTopics.Refresh, false, "")
	attrs := user.waitAttributes(n, teslaTopics.Attributes, hasErrorType("SERVER"))
	if errorOf(attrs)["status_code"] != 500.0 || errorOf(attrs)["request_id"] == "" {
		t.Errorf("a refresh during a 500 outage: attributes %v", attrs)
	}
	if got := chargeReads(e) - reads; got != 3 {
		t.Errorf("a read failing with 500 was tried %d times, want 3", got)
	}
	user.waitPayload(n, teslaTopics.LastError, "SERVER:INTERNAL")

	n = user.count()
	user.publish(teslaTopics.Command, false, "OPEN")
	opening := user.waitPayload(n, teslaTopics.State, "opening")
	attrs = user.waitAttributes(opening, teslaTopics.Attributes, hasErrorType("UPSTREAM"))
	if attrs["last_command"] != "OPEN" || errorOf(attrs)["status_code"] != 502.0 {
		t.Errorf("an OPEN during a 502 outage: attributes %v", attrs)
	}
	n = user.waitPayload(opening, teslaTopics.State, "closed")
	// A door command names its target state, so a 502 is retried like a read.
	if calls := e.doorCalls(); len(calls) != 3 {
		t.Errorf("an OPEN answered 502 was sent %d times, want 3 tries", len(calls))
	}
	// Still failing: the fault is not a one-off.
	reads = chargeReads(e)
	user.publish(teslaTopics.Refresh, false, "")
	user.waitAttributes(n, teslaTopics.Attributes, hasErrorType("SERVER"))

	e.sim.ClearFaults()
	n = user.count()
	pressed := time.Now()
	user.publish(teslaTopics.Refresh, false, "")
	user.waitAttributes(n, teslaTopics.Attributes, readSince(pressed))
	user.waitPayload(n, teslaTopics.LastError, "none")
	user.publish(teslaTopics.Command, false, "OPEN")
	user.waitPayload(n, teslaTopics.State, "open")
	if calls := e.doorCalls(); len(calls) != 3+1 {
		t.Errorf("%d door calls in all, want the 3 failed tries and the one after", len(calls))
	}
	if got := chargeReads(e) - reads; got != 3+1 {
		t.Errorf("%d reads after the first failure, want 3 tries then 1", got)
	}
	neverOffline(t, mustMessages(user))
}

// refuseWrites makes dir refuse new files and returns how to undo it. As a normal
// user, chmod 0500 does it. Root (CAP_DAC_OVERRIDE) writes through any mode, so then
// the directory is moved aside and a plain file takes its place: every create in it
// fails (ENOTDIR), while the files it held are kept, untouched, to be checked after.
//
// Moving the directory races with a write already under way (its temp file was made
// in the directory before the move, and its clean-up then looks for it at the old
// path): quiesce first, and see checkDataFiles.
func refuseWrites(t *testing.T, dir string) (undo func(), moved bool) {
	t.Helper()
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	probe, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		t.Logf("DATA_DIR made read-only with chmod 0500 (%v)", err)
		return func() { os.Chmod(dir, 0o700) }, false
	}
	probe.Close()
	os.Remove(probe.Name())
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	aside := dir + ".aside"
	if err := os.Rename(dir, aside); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, []byte("not a directory\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	t.Logf("running as uid %d, where chmod does not stop writes: DATA_DIR replaced by a plain file", os.Geteuid())
	return func() {
		if err := os.Remove(dir); err != nil {
			t.Error(err)
		}
		if err := os.Rename(aside, dir); err != nil {
			t.Error(err)
		}
	}, true
}

// quiesce returns once the Tesla's worker has finished the job it is on, its save
// included: Home Assistant's birth queues a republish, which the worker takes only
// after that job, and which starts with the availability.
func quiesce(r *recorder) {
	r.t.Helper()
	n := r.count()
	r.publish(haStatus, false, "online")
	r.waitPayload(n, teslaTopics.Availability, discovery.PayloadOnline)
}

// checkDataFiles says that every file in dir is whole: each *.json parses, and no
// temp file of a failed write is left over. When the directory was moved away
// (moved), a write under way at that moment leaves its temp file behind, the test's
// doing, not the daemon's: those are only reported (the embedded broker's retained
// store writes on its own schedule, so quiesce cannot rule it out).
func checkDataFiles(t *testing.T, dir string, moved bool) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, ent := range entries {
		name := ent.Name()
		names = append(names, name)
		if strings.HasPrefix(name, ".") {
			if moved {
				t.Logf("note: temp file %s left by a write under way when DATA_DIR was moved away", name)
			} else {
				t.Errorf("left-over temp file in DATA_DIR: %s", name)
			}
			continue
		}
		if !strings.HasSuffix(name, ".json") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !json.Valid(data) {
			t.Errorf("%s is torn: not valid JSON (%d bytes)", name, len(data))
		}
	}
	return names
}

func TestUnwritableDataDir(t *testing.T) {
	logs := newLogWatch(t)
	e := newEnv(t, "mochi", smartcarsim.Options{})
	e.log = logs.logger
	run := e.startBridge()
	user := e.recorder(base + "/#")
	ready(user, "closed")
	quiesce(user) // the first read's save is done
	n := user.count()
	stateFile := filepath.Join(e.dataDir, "state-"+tesla+".json")
	before, err := os.ReadFile(stateFile)
	if err != nil {
		t.Fatalf("no saved state before the fault: %v", err)
	}

	undo, moved := refuseWrites(t, e.dataDir)
	restored := false
	defer func() {
		if !restored {
			undo()
		}
	}()
	user.publish(teslaTopics.Command, false, "OPEN")
	n = user.waitPayload(n, teslaTopics.State, "open")
	failed := logs.waitFor(t, "that the door state could not be saved", func(e logEntry) bool {
		return e.Level == logrus.WarnLevel && strings.Contains(e.Message, "cannot save the door state") && e.Error != ""
	})
	t.Logf("logged: %s: %s", failed.Message, failed.Error)

	// Still serving: a read and a command work, each one call.
	pressed := time.Now()
	user.publish(teslaTopics.Refresh, false, "")
	user.waitAttributes(n, teslaTopics.Attributes, readSince(pressed))
	user.publish(teslaTopics.Command, false, "CLOSE")
	user.waitPayload(n, teslaTopics.State, "closed")
	if calls := e.doorCalls(); len(calls) != 2 {
		t.Errorf("%d door calls, want 2", len(calls))
	}
	neverOffline(t, mustMessages(user))

	// Stop everything while the directory still refuses writes (the embedded broker's
	// last flush of retained messages fails too), then look at what is on disk.
	run.stop(t)
	e.broker.Close()
	undo()
	restored = true
	names := checkDataFiles(t, e.dataDir, moved)
	t.Logf("DATA_DIR after the run: %v", names)
	after, err := os.ReadFile(stateFile)
	if err != nil {
		t.Fatal(err)
	}
	if string(after) != string(before) {
		t.Errorf("the saved state changed while DATA_DIR refused writes:\nbefore %s\nafter  %s", before, after)
	}
}

// With access tokens shorter than the early-refresh window every call refreshes, and
// every refresh rotates the refresh token, the old one dying at once. When DATA_DIR
// refuses the new pair, the bridge must not use it (a restart would wake up holding a
// dead token), must not spend another refresh, and must carry on by itself, saving
// the pair it kept, once DATA_DIR takes writes again.
func TestUnwritableDataDirKeepsTheRotatedLogin(t *testing.T) {
	e := newEnv(t, "mochi", smartcarsim.Options{AccessTTL: time.Minute})
	run := e.startBridge()
	user := e.recorder(base + "/#")
	ready(user, "closed")
	quiesce(user)
	n := user.count()

	undo, moved := refuseWrites(t, e.dataDir)
	restored := false
	defer func() {
		if !restored {
			undo()
		}
	}()
	before := len(e.sim.Requests())
	for i := range 2 {
		user.publish(teslaTopics.Refresh, false, "")
		attrs := user.waitAttributes(n, teslaTopics.Attributes, func(a map[string]any) bool {
			return hasErrorType("LOCAL")(a) && errorOf(a)["code"] == "DATA_DIR"
		})
		if i == 0 {
			t.Logf("error shown while the new pair cannot be saved: %v", errorOf(attrs))
		}
		n = user.count()
	}
	api, token := apiCalls(e.sim.Requests()[before:])
	if api != 0 || token != 1 {
		t.Errorf("two refreshes with DATA_DIR refusing writes: %d API calls, %d token calls; want 0 and the 1 refresh whose pair could not be saved", api, token)
	}
	neverOffline(t, mustMessages(user))

	undo()
	restored = true
	n = user.count()
	pressed := time.Now()
	user.publish(teslaTopics.Refresh, false, "")
	user.waitAttributes(n, teslaTopics.Attributes, readSince(pressed))
	run.stop(t)
	checkDataFiles(t, e.dataDir, moved)

	// The pair on disk is the live one: a restart from the store alone works.
	e.seed = ""
	n = user.count()
	e.startBridge()
	n = user.waitPayload(n, discovery.StatusTopic(base), discovery.PayloadOnline) // subscribed: the press is heard
	pressed = time.Now()
	user.publish(teslaTopics.Refresh, false, "")
	user.waitAttributes(n, teslaTopics.Attributes, readSince(pressed))
	for _, r := range e.sim.Requests() {
		if r.Path == "/oauth/token" && r.Status != http.StatusOK {
			t.Errorf("the token endpoint refused a refresh (%d): a rotated pair was lost", r.Status)
		}
	}
}
