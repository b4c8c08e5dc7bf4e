package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/smartcarsim"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/smartcar2mqtt/smartcar2mqtt/discovery"
	"github.com/smartcar2mqtt/smartcar2mqtt/internal/itest"
	"github.com/smartcar2mqtt/smartcar2mqtt/smartcar"
)

// Issue 6's process-level numbers: the daemon as users run it (built as the
// Dockerfile builds it), against the Smartcar simulator served by this process,
// with the embedded broker or an external mosquitto. The benchmarks report what
// they measure and assert nothing about time or size:
//
//	go test -run '^$' -bench Daemon -benchtime 1x -timeout 15m .
//
// Resident memory is VmRSS from /proc (Linux only). Idle is the median of the
// samples taken every 250 ms over idleWindow once the first read was published.

const idleWindow = 10 * time.Second

// daemonRun is one run of the built binary.
type daemonRun struct {
	cmd    *exec.Cmd
	stderr *itest.Output // its log, for failure messages
	exited chan struct{}
	start  time.Time
}

// perfWorld is the simulator behind an HTTP server, a built binary and a DATA_DIR
// that outlives each run of the daemon.
type perfWorld struct {
	b       *testing.B
	api     string // smartcar.V3 (the default) or smartcar.V2
	bin     string
	sim     *smartcarsim.Simulator
	srv     *httptest.Server
	dataDir string
	seed    string // refresh token for the first start
}

const (
	perfClientID, perfClientSecret       = "perf-client", "perf-secret-not-logged"
	perfAPIClientID, perfAPIClientSecret = "client_perf", "perf-api-secret-not-logged"
)

func newPerfWorld(b *testing.B, opts smartcarsim.Options) *perfWorld {
	return newPerfWorldAPI(b, smartcar.V3, opts)
}

func newPerfWorldAPI(b *testing.B, api string, opts smartcarsim.Options) *perfWorld {
	b.Helper()
	if _, err := os.Stat("/proc/self/status"); err != nil {
		b.Skip("resident memory is read from /proc: Linux only")
	}
	opts.ClientID, opts.ClientSecret = perfClientID, perfClientSecret
	opts.APIClientID, opts.APIClientSecret = perfAPIClientID, perfAPIClientSecret
	w := &perfWorld{
		b:       b,
		api:     api,
		bin:     buildDaemon(b),
		sim:     smartcarsim.New(opts),
		dataDir: b.TempDir(),
	}
	w.srv = httptest.NewServer(w.sim)
	b.Cleanup(w.srv.Close)
	w.seed = w.sim.IssueRefreshToken()
	return w
}

// buildDaemon builds the program as the Dockerfile does.
func buildDaemon(b *testing.B) string {
	b.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		b.Skipf("no go command to build the daemon with: %v", err)
	}
	bin := filepath.Join(b.TempDir(), "smartcar2mqtt")
	cmd := exec.Command(goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0") // static, as in the Dockerfile
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// start runs the daemon against mqttURL, or with the embedded broker on
// brokerAddr when mqttURL is empty; extra variables override the defaults.
func (w *perfWorld) start(mqttURL, brokerAddr string, extra ...string) *daemonRun {
	w.b.Helper()
	env := []string{
		"SMARTCAR_CLIENT_ID=" + perfAPIClientID,
		"SMARTCAR_CLIENT_SECRET=" + perfAPIClientSecret,
		"SMARTCAR_API_URL=" + w.srv.URL + "/v3",
		"SMARTCAR_TOKEN_URL=" + w.srv.URL + "/oauth2/token",
	}
	if w.api == smartcar.V2 {
		env = []string{
			"SMARTCAR_CLIENT_ID=" + perfClientID,
			"SMARTCAR_CLIENT_SECRET=" + perfClientSecret,
			"SMARTCAR_REFRESH_TOKEN=" + w.seed, // ignored once the store holds a token
			"SMARTCAR_API_URL=" + w.srv.URL + "/v2.0",
			"SMARTCAR_TOKEN_URL=" + w.srv.URL + "/oauth/token",
		}
	}
	env = append(env,
		"DATA_DIR="+w.dataDir,
		"HTTP_LISTEN=off",
		"LOG_LEVEL=info",
	)
	if mqttURL != "" {
		env = append(env, "MQTT_URL="+mqttURL)
	} else {
		env = append(env, "BROKER_LISTEN="+brokerAddr, "BROKER_ALLOW_ANONYMOUS=true")
	}
	env = append(env, extra...) // the last of a variable wins
	d := &daemonRun{
		cmd:    exec.Command(w.bin, "run"),
		stderr: &itest.Output{},
		exited: make(chan struct{}),
	}
	d.cmd.Env = env
	d.cmd.Stderr = d.stderr
	d.start = time.Now()
	if err := d.cmd.Start(); err != nil {
		w.b.Fatalf("start the daemon: %v", err)
	}
	go func() {
		d.cmd.Wait()
		d.stderr.Close()
		close(d.exited)
	}()
	w.b.Cleanup(func() { d.stop(w.b) })
	return d
}

// stop sends SIGTERM, as docker stop does, and waits for the exit.
func (d *daemonRun) stop(b *testing.B) {
	select {
	case <-d.exited:
		return
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(15 * time.Second):
		d.cmd.Process.Kill()
		<-d.exited
		b.Errorf("the daemon did not stop within 15 s of SIGTERM:\n%s", d.stderr.Text())
	}
}

// memory is one reading of the daemon's resident memory, in MB: all of it
// (VmRSS), and its two parts: anonymous (heap, stacks, runtime) and file-backed
// (the binary's code and data pages it has touched, which the kernel may drop
// and read again; they never shrink on their own).
type memory struct{ rss, anon, file float64 }

func (d *daemonRun) memory(b *testing.B) memory {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	if err != nil {
		b.Fatalf("read the daemon's memory: %v\n%s", err, d.stderr.Text())
	}
	var m memory
	fields := map[string]*float64{"VmRSS:": &m.rss, "RssAnon:": &m.anon, "RssFile:": &m.file}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		name, rest, _ := strings.Cut(sc.Text(), "\t")
		if dst, ok := fields[name]; ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				b.Fatalf("%s %q: %v", name, rest, err)
			}
			*dst = kb / 1024
			delete(fields, name)
		}
	}
	if len(fields) > 0 {
		b.Fatalf("/proc/<pid>/status lacks %v", fields)
	}
	return m
}

// memorySeries samples the resident memory every 250 ms for window.
func (d *daemonRun) memorySeries(b *testing.B, window time.Duration) []memory {
	b.Helper()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	end := time.After(window)
	var samples []memory
	for {
		select {
		case <-tick.C:
			samples = append(samples, d.memory(b))
		case <-end:
			return samples
		case <-d.exited:
			b.Fatalf("the daemon exited:\n%s", d.stderr.Text())
		}
	}
}

// idleMemory samples the resident memory for window and returns the sample of
// median RSS, and the largest RSS.
func (d *daemonRun) idleMemory(b *testing.B, window time.Duration) (median memory, peak float64) {
	b.Helper()
	samples := d.memorySeries(b, window)
	slices.SortFunc(samples, func(x, y memory) int { return cmp.Compare(x.rss, y.rss) })
	return samples[len(samples)/2], samples[len(samples)-1].rss
}

// waitReady waits until the daemon has made its first read, i.e. it is past
// start-up and has published a real state.
func (w *perfWorld) waitReady(d *daemonRun) {
	w.b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := w.sim.WaitRequest(ctx, func(r smartcarsim.Request) bool {
		return isRead(r) && r.Status == http.StatusOK
	})
	if err != nil {
		w.b.Fatalf("no charge read within 20 s: %v\n%s", err, d.stderr.Text())
	}
}

// isRead is a state read of either API generation.
func isRead(r smartcarsim.Request) bool {
	return strings.HasSuffix(r.Path, "/tesla/charge") || strings.HasSuffix(r.Path, "/signals")
}

// isDoorCall is a charge port command of either API generation.
func isDoorCall(r smartcarsim.Request) bool {
	return r.Method == http.MethodPost && (strings.HasSuffix(r.Path, "/charge_port_door") || strings.Contains(r.Path, "/commands/charge-port/"))
}

// isTokenCall is a request to either token endpoint.
func isTokenCall(r smartcarsim.Request) bool {
	return r.Path == "/oauth/token" || r.Path == "/oauth2/token"
}

// watcher connects a plain MQTT client, as Home Assistant would.
func watcher(b *testing.B, url, name string) mqtt.Client {
	b.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).
		SetClientID(fmt.Sprintf("perf-%s-%d", name, time.Now().UnixNano())).
		SetCleanSession(true).SetAutoReconnect(false).SetOrderMatters(true))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatalf("%s: connect to %s: %v", name, url, tok.Error())
	}
	b.Cleanup(func() { c.Disconnect(50) })
	return c
}

// BenchmarkDaemonIdleMemory is the resident memory of an idle daemon bridging the
// simulator's two vehicles, with the embedded broker (targets ≤ 20 MB) and with an
// external mosquitto (≤ 15 MB).
func BenchmarkDaemonIdleMemory(b *testing.B) {
	for _, external := range []bool{false, true} {
		name := "broker=embedded"
		if external {
			name = "broker=mosquitto"
		}
		b.Run(name, func(b *testing.B) {
			mqttURL := ""
			if external {
				mqttURL = itest.NewMosquitto(b, "tcp", "").URL()
			}
			w := newPerfWorld(b, smartcarsim.Options{})
			for b.Loop() {
				d := w.start(mqttURL, freeAddr(b))
				w.waitReady(d)
				median, peak := d.idleMemory(b, idleWindow)
				b.ReportMetric(median.rss, "idle-RSS-MB")
				b.ReportMetric(median.anon, "idle-anon-MB")
				b.ReportMetric(median.file, "idle-file-MB")
				b.ReportMetric(peak, "peak-RSS-MB")
				d.stop(b)
			}
		})
	}
}

// BenchmarkDaemonWarmStart is a restart with a warm DATA_DIR (tokens, vehicle
// list and door states kept by the previous run), as after `docker restart`: the
// time from the process starting to its discovery config reaching a subscriber
// (target ≤ 300 ms), and the Smartcar calls that restart made (should be 0).
func BenchmarkDaemonWarmStart(b *testing.B) {
	// A warm start that still called Smartcar would do so at once (a due read,
	// an expired token): this long after discovery, its requests are counted.
	const observe = 2 * time.Second
	m := itest.NewMosquitto(b, "tcp", "")
	w := newPerfWorld(b, smartcarsim.Options{})
	cold := w.start(m.URL(), "") // fills DATA_DIR
	w.waitReady(cold)
	cold.stop(b)

	configTopic := discovery.ConfigTopic("homeassistant", smartcarsim.TeslaID)
	var took []time.Duration
	calls := 0
	for b.Loop() {
		// A subscriber of its own for each start: what the last run published
		// cannot be taken for this one's.
		live := make(chan time.Time, 1)
		ha := watcher(b, m.URL(), "ha")
		if tok := ha.Subscribe(configTopic, 1, func(_ mqtt.Client, msg mqtt.Message) {
			if !msg.Retained() && len(msg.Payload()) > 0 { // the retained one is the last run's
				select {
				case live <- time.Now():
				default:
				}
			}
		}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			b.Fatalf("subscribe: %v", tok.Error())
		}
		before := len(w.sim.Requests())
		d := w.start(m.URL(), "")
		select {
		case at := <-live:
			took = append(took, at.Sub(d.start))
		case <-d.exited:
			b.Fatalf("the daemon exited:\n%s", d.stderr.Text())
		case <-time.After(20 * time.Second):
			b.Fatalf("no discovery within 20 s:\n%s", d.stderr.Text())
		}
		select {
		case <-time.After(observe):
		case <-d.exited:
			b.Fatalf("the daemon exited:\n%s", d.stderr.Text())
		}
		d.stop(b)
		ha.Disconnect(50)
		calls += len(w.sim.Requests()) - before
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2])/float64(time.Millisecond), "ms-to-discovery")
	b.ReportMetric(float64(took[len(took)-1])/float64(time.Millisecond), "max-ms-to-discovery")
	b.ReportMetric(float64(calls)/float64(len(took)), "smartcar-requests/start")
}

// BenchmarkDaemonCommandBurst publishes 100,000 commands as fast as a client can
// (QoS 1, through mosquitto with no queue limit, so none is dropped before the
// daemon), then a refresh: the daemon handles messages in order, so the refresh's
// read arriving at the simulator means it has handled the whole burst. The
// simulated car takes carLatency per command, as a real one takes seconds, so the
// coalescing rule applies: one call in flight, the burst's last word queued.
//
// Reported: idle memory before, the peak, memory 30 s, 150 s and 300 s after the
// burst (target: back within 10% of idle; the Go runtime returns freed memory to
// the system after a garbage collection, and an idle daemon runs one every 2 min
// once it has run a first, which the daemon does at the end of start-up),
// the door calls the burst cost, and how long the daemon took to handle it.
func BenchmarkDaemonCommandBurst(b *testing.B) {
	const (
		burst      = 100_000
		carLatency = 5 * time.Second
	)
	m := itest.NewMosquitto(b, "tcp", "max_queued_messages 0\n")
	w := newPerfWorld(b, smartcarsim.Options{Latency: carLatency})
	topics := discovery.VehicleTopics("smartcar2mqtt", smartcarsim.TeslaID)
	for b.Loop() {
		d := w.start(m.URL(), "")
		w.waitReady(d)
		idle, _ := d.idleMemory(b, idleWindow)

		user := watcher(b, m.URL(), "burst")
		began, burstStart := len(w.sim.Requests()), time.Now()
		payloads := [2]string{"OPEN", "CLOSE"}
		var last mqtt.Token
		for i := range burst {
			last = user.Publish(topics.Command, 1, false, payloads[i%2])
		}
		if !last.WaitTimeout(2*time.Minute) || last.Error() != nil {
			b.Fatalf("publish the burst: %v", last.Error())
		}
		if tok := user.Publish(topics.Refresh, 1, false, ""); !tok.WaitTimeout(time.Minute) || tok.Error() != nil {
			b.Fatalf("publish refresh: %v", tok.Error())
		}
		handled := make(chan struct{})
		var handledErr error // set before handled is closed
		go func() {
			defer close(handled)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			_, handledErr = w.sim.WaitRequest(ctx, func(r smartcarsim.Request) bool {
				return isRead(r) && strings.Contains(r.Path, smartcarsim.TeslaID) && r.Status != 0 && r.At.After(burstStart)
			})
		}()
		peak := 0.0
		tick := time.NewTicker(100 * time.Millisecond)
	wait:
		for {
			select {
			case <-tick.C:
				peak = max(peak, d.memory(b).rss)
			case <-handled:
				break wait
			}
		}
		tick.Stop()
		if handledErr != nil {
			b.Fatalf("the refresh after the burst never reached Smartcar: %v\n%s", handledErr, d.stderr.Text())
		}
		took := time.Since(burstStart)
		peak = max(peak, d.memory(b).rss)
		doors := 0
		for _, r := range w.sim.Requests()[began:] {
			if isDoorCall(r) {
				doors++
			}
		}
		after := d.memorySeries(b, 300*time.Second)
		at := func(sec int) memory { return after[min(len(after)-1, sec*4-1)] } // 4 samples a second
		b.ReportMetric(idle.rss, "idle-RSS-MB")
		b.ReportMetric(idle.anon, "idle-anon-MB")
		b.ReportMetric(peak, "peak-RSS-MB")
		b.ReportMetric(at(30).rss, "after-30s-RSS-MB")
		b.ReportMetric(at(150).rss, "after-150s-RSS-MB")
		b.ReportMetric(at(300).rss, "after-300s-RSS-MB")
		b.ReportMetric(at(300).anon, "after-300s-anon-MB")
		b.ReportMetric(100*(at(300).rss-idle.rss)/idle.rss, "after-300s-vs-idle-%")
		b.ReportMetric(100*(at(300).anon-idle.anon)/idle.anon, "after-300s-anon-vs-idle-%")
		b.ReportMetric(float64(doors), "door-calls")
		b.ReportMetric(took.Seconds(), "burst-handled-s")
		d.stop(b)
	}
}

// BenchmarkDaemonCallsPerEvent counts what each thing a user does costs in Smartcar
// requests (each one may be billed) and token endpoint requests, API v3 and v2.0
// side by side, on the simulator's two cars: a cold start (empty DATA_DIR), a warm
// restart, one OPEN, one refresh. A step is over when its effect is seen (the
// state published, the read answered) and then quiet settles: quiet is a window
// with no request at all, so nothing a step caused late is missed.
func BenchmarkDaemonCallsPerEvent(b *testing.B) {
	const quiet = 2 * time.Second
	for _, api := range []string{smartcar.V3, smartcar.V2} {
		b.Run("api="+api, func(b *testing.B) {
			m := itest.NewMosquitto(b, "tcp", "")
			for b.Loop() {
				w := newPerfWorldAPI(b, api, smartcarsim.Options{})
				var steps []string
				counts := map[string][2]int{}
				mark := len(w.sim.Requests())
				count := func(step string) {
					w.settle(quiet)
					reqs := w.sim.Requests()[mark:]
					mark += len(reqs)
					var c [2]int
					for _, r := range reqs {
						if isTokenCall(r) {
							c[1]++
						} else if !strings.HasPrefix(r.Path, "/simulator/") {
							c[0]++
						}
					}
					steps = append(steps, step)
					counts[step] = c
				}
				d := w.start(m.URL(), "")
				w.waitReady(d)
				count("cold-start")
				d.stop(b)

				ha := watcher(b, m.URL(), "ha")
				states := make(chan string, 64)
				topics := discovery.VehicleTopics("smartcar2mqtt", smartcarsim.TeslaID)
				if tok := ha.Subscribe(topics.State, 1, func(_ mqtt.Client, msg mqtt.Message) {
					if !msg.Retained() {
						states <- string(msg.Payload())
					}
				}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
					b.Fatalf("subscribe: %v", tok.Error())
				}
				d = w.start(m.URL(), "")
				awaitState(b, d, states, "closed")
				count("warm-restart")

				ha.Publish(topics.Command, 1, false, "OPEN")
				awaitState(b, d, states, "open")
				count("open")

				seen := w.seen()
				ha.Publish(topics.Refresh, 1, false, "PRESS")
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				_, err := w.sim.WaitRequest(ctx, func(r smartcarsim.Request) bool { return isRead(r) && r.Status != 0 && !seen[r.RequestID] })
				cancel()
				if err != nil {
					b.Fatalf("no read after the refresh: %v", err)
				}
				count("read")
				d.stop(b)
				for _, step := range steps {
					b.ReportMetric(float64(counts[step][0]), "calls/"+step)
					b.ReportMetric(float64(counts[step][1]), "token-calls/"+step)
				}
			}
		})
	}
}

// seen is the request ids the simulator has logged so far.
func (w *perfWorld) seen() map[string]bool {
	ids := map[string]bool{}
	for _, r := range w.sim.Requests() {
		ids[r.RequestID] = true
	}
	return ids
}

// settle waits until the simulator has seen no new request for quiet.
func (w *perfWorld) settle(quiet time.Duration) {
	for {
		seen := w.seen()
		ctx, cancel := context.WithTimeout(context.Background(), quiet)
		_, err := w.sim.WaitRequest(ctx, func(r smartcarsim.Request) bool { return !seen[r.RequestID] })
		cancel()
		if err != nil {
			return // quiet for the whole window
		}
	}
}

// awaitState waits for the daemon to publish state.
func awaitState(b *testing.B, d *daemonRun, states <-chan string, want string) {
	b.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case s := <-states:
			if s == want {
				return
			}
		case <-d.exited:
			b.Fatalf("the daemon exited:\n%s", d.stderr.Text())
		case <-deadline:
			b.Fatalf("no state %q within 20 s:\n%s", want, d.stderr.Text())
		}
	}
}
