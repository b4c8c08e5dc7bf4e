package bridge

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/smartcarsim"
)

// The cover's attributes say what happened, in words a person reads in Home
// Assistant: the last command and its result, the last successful read, and the
// last failure, each by itself, so that one never passes for another.

// attributeKeys and errorKeys are the attributes' contract: every key always
// present, null when not known.
var (
	attributeKeys = []string{"error", "last_command", "last_command_at", "last_command_result", "last_read_at"}
	errorKeys     = []string{"at", "code", "description", "request_id", "resolution", "status_code", "type"}
)

// checkShape fails unless a holds exactly the contract's keys, its times in
// RFC 3339, and an error object (if any) with exactly its keys and a sentence.
func checkShape(t *testing.T, a map[string]any) {
	t.Helper()
	if got := slices.Sorted(maps.Keys(a)); !slices.Equal(got, attributeKeys) {
		t.Errorf("attribute keys %v, want %v", got, attributeKeys)
	}
	for _, k := range []string{"last_command_at", "last_read_at"} {
		if s, ok := a[k].(string); ok {
			if _, err := time.Parse(time.RFC3339, s); err != nil {
				t.Errorf("%s = %q is not RFC 3339", k, s)
			}
		}
	}
	if e := errorOf(a); e != nil {
		if got := slices.Sorted(maps.Keys(e)); !slices.Equal(got, errorKeys) {
			t.Errorf("error keys %v, want %v", got, errorKeys)
		}
		checkSentence(t, fmt.Sprint(e["description"]))
	}
}

// checkSentence fails when a description shows Go's error syntax or a URL
// instead of a sentence.
func checkSentence(t *testing.T, s string) {
	t.Helper()
	for _, bad := range []string{`"`, "dial tcp", "Post ", "Get ", "://", "context deadline exceeded"} {
		if strings.Contains(s, bad) {
			t.Errorf("description %q contains %q", s, bad)
		}
	}
	if s == "" || s == "<nil>" {
		t.Errorf("no description: %q", s)
	}
}

// stampAt reads an attribute time; the zero time when it is null.
func stampAt(t *testing.T, a map[string]any, key string) time.Time {
	t.Helper()
	s, ok := a[key].(string)
	if !ok {
		return time.Time{}
	}
	at, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("%s = %q: %v", key, s, err)
	}
	return at
}

// A failed CLOSE stays failed through the reads after it: a read says when it
// happened and clears the error, and never touches what the command said.
func TestReadKeepsTheFailedCommandFailed(t *testing.T) {
	e := newEnv(t, "mochi", smartcarsim.Options{})
	e.startBridge()
	user := e.recorder(base + "/#")
	n := ready(user, "closed")

	user.publish(teslaTopics.Command, false, "OPEN")
	n = user.waitPayload(n, teslaTopics.State, "open")
	opened := user.waitAttributes(n, teslaTopics.Attributes, func(a map[string]any) bool { return a["last_command"] == "OPEN" })
	checkShape(t, opened)
	if opened["last_command_result"] != "success" || opened["error"] != nil || stampAt(t, opened, "last_command_at").IsZero() {
		t.Errorf("attributes after a successful OPEN = %v", opened)
	}

	e.sim.InjectFault(smartcarsim.Fault{Method: "POST", Path: "/charge/charge_port_door", Status: 409, Type: "VEHICLE_STATE", Code: "ASLEEP"})
	user.publish(teslaTopics.Command, false, "CLOSE")
	closing := user.waitPayload(n, teslaTopics.State, "closing")
	failed := user.waitAttributes(closing, teslaTopics.Attributes, func(a map[string]any) bool { return a["last_command"] == "CLOSE" })
	checkShape(t, failed)
	if failed["last_command_result"] != "error" || errorOf(failed)["type"] != "VEHICLE_STATE" || errorOf(failed)["code"] != "ASLEEP" {
		t.Errorf("attributes after a refused CLOSE = %v", failed)
	}
	if errorOf(failed)["at"] != failed["last_command_at"] {
		t.Errorf("the error happened at %v, the command ended at %v", errorOf(failed)["at"], failed["last_command_at"])
	}
	user.waitPayload(closing, teslaTopics.LastError, "VEHICLE_STATE:ASLEEP")

	pressed := time.Now()
	m := user.count()
	user.publish(teslaTopics.Refresh, false, "")
	read := user.waitAttributes(m, teslaTopics.Attributes, func(a map[string]any) bool {
		return !stampAt(t, a, "last_read_at").Before(pressed)
	})
	checkShape(t, read)
	for _, k := range []string{"last_command", "last_command_result", "last_command_at"} {
		if read[k] != failed[k] {
			t.Errorf("the read changed %s from %v to %v", k, failed[k], read[k])
		}
	}
	if read["error"] != nil {
		t.Errorf("error = %v after a read that worked, want null", read["error"])
	}
	user.waitPayload(m, teslaTopics.LastError, "none")
}

// A command Smartcar never answers may or may not have moved the door: its
// result is unknown, the read that follows says what the door does, and the
// result stays unknown, because a read is not the command's answer.
func TestCommandWithoutAnAnswerIsUnknown(t *testing.T) {
	e, f := newFlakyEnv(t, time.Second)
	logs := newLogWatch(t)
	e.log = logs.logger
	e.startBridge()
	user := e.recorder(base + "/#")
	n := ready(user, "closed")

	release := f.holdDoors() // the command reaches Smartcar's front and gets no answer
	defer release()
	user.publish(teslaTopics.Command, false, "OPEN")
	opening := user.waitPayload(n, teslaTopics.State, "opening")
	unknown := user.waitAttributes(opening, teslaTopics.Attributes, func(a map[string]any) bool { return a["last_command_result"] != nil })
	checkShape(t, unknown)
	if unknown["last_command"] != "OPEN" || unknown["last_command_result"] != "unknown" {
		t.Errorf("attributes after an unanswered OPEN = %v, want result unknown", unknown)
	}
	desc := fmt.Sprint(errorOf(unknown)["description"])
	for _, want := range []string{"within 1s", "may or may not have moved the door", "reading its state instead"} {
		if !strings.Contains(desc, want) {
			t.Errorf("description %q does not say %q", desc, want)
		}
	}
	user.waitPayload(opening, teslaTopics.LastError, "TIMEOUT:OUTCOME_UNKNOWN")
	entry := logs.waitFor(t, "the command's end without a result", func(l logEntry) bool {
		return l.Level == logrus.WarnLevel && l.Fields["action"] == "OPEN"
	})
	if entry.Fields["result"] != "unknown" || entry.Fields["error"] != "TIMEOUT:OUTCOME_UNKNOWN" || entry.Fields["description"] != desc {
		t.Errorf("logged %q %v", entry.Message, entry.Fields)
	}

	// The read the bridge makes instead of guessing.
	read := user.waitAttributes(opening, teslaTopics.Attributes, func(a map[string]any) bool {
		return stampAt(t, a, "last_read_at").After(stampAt(t, unknown, "last_command_at"))
	})
	checkShape(t, read)
	if read["last_command_result"] != "unknown" || read["last_command_at"] != unknown["last_command_at"] || read["error"] != nil {
		t.Errorf("attributes after the read = %v: the command stays unknown, the error is gone", read)
	}
	user.waitPayload(opening, teslaTopics.State, "closed")
	if got := f.doors.Load(); got != 1 {
		t.Errorf("the unanswered OPEN was sent %d times, want 1", got)
	}
}

// Smartcar out of reach shows as TYPE:CODE and a sentence, never Go's error text.
func TestNetworkFailureReadsAsASentence(t *testing.T) {
	e, f := newFlakyEnv(t, 5*time.Second)
	e.startBridge()
	user := e.recorder(base + "/#")
	n := ready(user, "closed")

	f.down()
	user.publish(teslaTopics.Refresh, false, "")
	attrs := user.waitAttributes(n, teslaTopics.Attributes, func(a map[string]any) bool { return a["error"] != nil })
	checkShape(t, attrs)
	if e := errorOf(attrs); e["type"] != "NETWORK" || e["code"] != "CONNECTION_REFUSED" || e["status_code"] != nil {
		t.Errorf("error = %v, want NETWORK:CONNECTION_REFUSED without a status", e)
	}
	if attrs["last_command"] != nil || attrs["last_command_result"] != nil {
		t.Errorf("a read made up a command: %v", attrs)
	}
	user.waitPayload(n, teslaTopics.LastError, "NETWORK:CONNECTION_REFUSED")
	details := user.waitFor("the last error's details", func(ms []message) bool {
		m, ok := findTopic(ms, teslaTopics.LastErrorAttributes)
		return ok && strings.Contains(m.Payload, "refused")
	})
	m, _ := findTopic(details, teslaTopics.LastErrorAttributes)
	var last struct{ Description, At string }
	if err := json.Unmarshal([]byte(m.Payload), &last); err != nil {
		t.Fatal(err)
	}
	checkSentence(t, last.Description)
	failedAt, err := time.Parse(time.RFC3339Nano, fmt.Sprint(errorOf(attrs)["at"]))
	if err != nil {
		t.Fatal(err)
	}
	// The sensor's time is to the second, as Home Assistant shows a timestamp.
	if last.Description != errorOf(attrs)["description"] || last.At != failedAt.Truncate(time.Second).Format(time.RFC3339) {
		t.Errorf("last error %+v, cover's error %v: they tell the same failure", last, errorOf(attrs))
	}
}

// An older version kept one result for whichever call was last. Its files load
// into today's attributes without inventing a command result, and its raw Go
// error texts are replaced by a sentence.
func TestStateFromAnOlderVersionLoads(t *testing.T) {
	const readAt = `"2025-06-01T20:30:00.25+02:00"`
	for _, tc := range []struct {
		name, attrs, want string
	}{
		{"a read after a failed CLOSE, saved as success",
			`{"last_command":"CLOSE","result":"success","error":null,"updated_at":"2025-06-01T20:42:07.5+02:00","source":"poll"}`,
			`{"last_command":"CLOSE","last_command_result":null,"last_command_at":null,"last_read_at":"2025-06-01T18:30:00.25Z","error":null}`},
		{"a successful command",
			`{"last_command":"OPEN","result":"success","error":null,"updated_at":"2025-06-01T20:42:07+02:00","source":"command"}`,
			`{"last_command":"OPEN","last_command_result":"success","last_command_at":"2025-06-01T18:42:07Z","last_read_at":"2025-06-01T18:30:00.25Z","error":null}`},
		{"a command that failed without an answer, with Go's error text",
			`{"last_command":"OPEN","result":"error","error":{"type":"NETWORK","description":"Post \"http://127.0.0.1:1/v2.0/vehicles/V/tesla/charge/charge_port_door\": dial tcp 127.0.0.1:1: connect: connection refused"},"updated_at":"2025-06-01T20:42:07+02:00","source":"command"}`,
			`{"last_command":"OPEN","last_command_result":"error","last_command_at":"2025-06-01T18:42:07Z","last_read_at":"2025-06-01T18:30:00.25Z",` +
				`"error":{"type":"NETWORK","code":"FAILED","description":"the connection to Smartcar failed (kept by an earlier version of smartcar2mqtt, without details)","request_id":null,"resolution":null,"status_code":null,"at":"2025-06-01T18:42:07Z"}}`},
		{"a read Smartcar refused",
			`{"last_command":"OPEN","result":"error","error":{"type":"VEHICLE_STATE","code":"ASLEEP","description":"The vehicle is asleep.","request_id":"r1","status_code":409},"updated_at":"2025-06-01T20:42:07+02:00","source":"poll"}`,
			`{"last_command":"OPEN","last_command_result":null,"last_command_at":null,"last_read_at":"2025-06-01T18:30:00.25Z",` +
				`"error":{"type":"VEHICLE_STATE","code":"ASLEEP","description":"The vehicle is asleep.","request_id":"r1","resolution":null,"status_code":409,"at":"2025-06-01T18:42:07Z"}}`},
		{"a timed-out read",
			`{"result":"error","error":{"type":"TIMEOUT","description":"read charge state of V: Get \"http://x/v2.0\": context deadline exceeded"},"updated_at":"2025-06-01T20:42:07+02:00","source":"poll"}`,
			`{"last_command":null,"last_command_result":null,"last_command_at":null,"last_read_at":"2025-06-01T18:30:00.25Z",` +
				`"error":{"type":"TIMEOUT","code":"REQUEST","description":"Smartcar did not answer in time (kept by an earlier version of smartcar2mqtt)","request_id":null,"resolution":null,"status_code":null,"at":"2025-06-01T18:42:07Z"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			file := `{"state":"open","attributes":` + tc.attrs + `,"known_at":` + readAt + `,"read_at":` + readAt + `}`
			if err := os.WriteFile(filepath.Join(dir, "state-V.json"), []byte(file), 0o600); err != nil {
				t.Fatal(err)
			}
			saved, ok := newMemory(dir, "V").load(testLog(t))
			if !ok {
				t.Fatal("the older file was not loaded")
			}
			got, err := json.Marshal(saved.Attributes)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("attributes\n got %s\nwant %s", got, tc.want)
			}

			// What this version writes, it reads back the same.
			mem := newMemory(t.TempDir(), "V")
			mem.save(testLog(t), saved)
			again, ok := mem.load(testLog(t))
			if !ok {
				t.Fatal("the file this version wrote was not loaded")
			}
			if round, _ := json.Marshal(again.Attributes); string(round) != tc.want {
				t.Errorf("after a save and a load\n got %s\nwant %s", round, tc.want)
			}
		})
	}
}

// A restart onto an older version's file publishes today's attributes and a
// last error that reads TYPE:CODE, at once and without a Smartcar call.
func TestRestartOntoAnOlderFilePublishesTheNewShape(t *testing.T) {
	e := newEnv(t, "mochi", smartcarsim.Options{})
	at := time.Now().Add(-time.Minute).Format(time.RFC3339Nano) // the poll is hours away
	old := fmt.Sprintf(`{"state":"closed","attributes":{"last_command":"OPEN","result":"error",`+
		`"error":{"type":"NETWORK","description":"Post \"http://127.0.0.1:1/x\": dial tcp 127.0.0.1:1: connect: connection refused"},`+
		`"updated_at":%q,"source":"command"},"known_at":%q,"read_at":%q}`, at, at, at)
	if err := os.WriteFile(filepath.Join(e.dataDir, "state-"+tesla+".json"), []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	e.startBridge()
	user := e.recorder(base + "/#")
	user.waitPayload(0, teslaTopics.State, "closed")
	user.waitPayload(0, teslaTopics.LastError, "NETWORK:FAILED")
	attrs := user.waitAttributes(0, teslaTopics.Attributes, func(map[string]any) bool { return true })
	checkShape(t, attrs)
	if attrs["last_command"] != "OPEN" || attrs["last_command_result"] != "error" || stampAt(t, attrs, "last_read_at").IsZero() {
		t.Errorf("attributes from the older file = %v", attrs)
	}
	if reads := chargeReads(e); reads != 0 {
		t.Errorf("%d reads on a warm restart, want 0", reads)
	}
}

// The guide's example of the attributes has exactly the keys the bridge
// publishes, so a template written from it works.
func TestGuideShowsTheAttributesAsPublished(t *testing.T) {
	guide, err := os.ReadFile(filepath.Join("..", "docs", "home-assistant.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(guide), "<!-- cover-attributes")
	if !ok {
		t.Fatal("the guide has no <!-- cover-attributes --> example")
	}
	_, rest, _ = strings.Cut(rest, "```json\n")
	block, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatal("the attributes example is not a json block")
	}
	var example map[string]any
	if err := json.Unmarshal([]byte(block), &example); err != nil {
		t.Fatalf("the attributes example is not JSON: %v\n%s", err, block)
	}
	checkShape(t, example)
	if errorOf(example) == nil {
		t.Error("the example shows no error object")
	}
	published, err := json.Marshal(attributes{LastCommand: "CLOSE", LastCommandResult: resultError, LastCommandAt: time.Now(), LastReadAt: time.Now(),
		Error: &errorInfo{Type: "T", Code: "C", Description: "d", RequestID: "r", Resolution: "RETRY_LATER", StatusCode: 409, At: time.Now()}})
	if err != nil {
		t.Fatal(err)
	}
	var a map[string]any
	if err := json.Unmarshal(published, &a); err != nil {
		t.Fatal(err)
	}
	checkShape(t, a) // the bridge keeps to the same contract as the guide
}
