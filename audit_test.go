package main

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/itest"
	"github.com/smartcar2mqtt/smartcar2mqtt/internal/smartcarsim"
	"github.com/smartcar2mqtt/smartcar2mqtt/smartcar"
)

// tokenSecrets is what the token store holds now; any error gives nothing (the
// store is replaced atomically, so that is only "not yet").
func tokenSecrets(dataDir string) []string {
	tok, err := smartcar.NewTokenStore(dataDir).Load()
	if err != nil {
		return nil
	}
	var out []string
	for _, s := range []string{tok.AccessToken, tok.RefreshToken} {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

var (
	listenField = regexp.MustCompile(`listen="?([0-9.]+:[0-9]+)`)
	stateDir    = regexp.MustCompile(`State is kept in (.+)\. Stop with`)
	bearer      = regexp.MustCompile(`Bearer (\S+)`)
)

const auditBrokerUser, auditBrokerPassword = "ha-audit", "broker-pw-6c1f0e2d"

// TestLogAudit runs the daemon as a user would, at LOG_LEVEL=debug, through a whole
// session: connect, OPEN, a refresh, /metrics and /healthz, SIGTERM. Then no secret
// may appear in anything it printed or served: the client secret, the broker
// password, or any token of the run. With API v3 the application token opens every
// car of the app, so it is worth more than a v2.0 user's token.
func TestLogAudit(t *testing.T) {
	t.Run("v3", func(t *testing.T) {
		// The daemon itself (`run`) against a simulator of the test's own, whose
		// request log shows every application token the daemon was given.
		const secret = "audit-api-secret-9f3b"
		sim := smartcarsim.New(smartcarsim.Options{APIClientID: "client_audit", APIClientSecret: secret, ApplicationID: "app"})
		srv := httptest.NewServer(sim)
		defer srv.Close()
		httpAddr := freeAddr(t)
		d := startMain(t, []string{
			"SMARTCAR_CLIENT_ID=client_audit", "SMARTCAR_CLIENT_SECRET=" + secret,
			"SMARTCAR_API_URL=" + srv.URL + "/v3", "SMARTCAR_TOKEN_URL=" + srv.URL + "/oauth2/token",
			"DATA_DIR=" + t.TempDir(), "HTTP_LISTEN=" + httpAddr, "BROKER_LISTEN=127.0.0.1:0", "LOG_LEVEL=debug",
			"BROKER_USERNAME=" + auditBrokerUser, "BROKER_PASSWORD=" + auditBrokerPassword,
		}, "run")
		pages := driveSession(t, d, httpAddr, `endpoint="charge_port_command"`, func() {})
		tokens := map[string]bool{}
		for _, r := range sim.Requests() {
			if m := bearer.FindStringSubmatch(r.Authorization); m != nil {
				tokens[m[1]] = true
			}
		}
		if len(tokens) < 1 {
			t.Fatal("the simulator saw no application token: the audit would prove little")
		}
		audit(t, d, pages, map[string]string{"the client secret": secret}, tokens)
	})
	t.Run("v2", func(t *testing.T) {
		// The demo on the legacy path: every token its token store held.
		httpAddr := freeAddr(t)
		dataDir := t.TempDir()
		d := startDemo(t, "SMARTCAR_API_VERSION=v2",
			"DATA_DIR="+dataDir, "HTTP_LISTEN="+httpAddr,
			"BROKER_LISTEN=127.0.0.1:0", "LOG_LEVEL=debug",
			"BROKER_USERNAME="+auditBrokerUser, "BROKER_PASSWORD="+auditBrokerPassword,
		)
		// The demo's seed refresh token is written before the help is printed, which
		// says where the state is (DATA_DIR/demo: apart from a real login).
		where := stateDir.FindStringSubmatch(d.stdout.WaitLine(t, "State is kept in", 20*time.Second))
		if where == nil || !strings.HasPrefix(where[1], dataDir) {
			t.Fatalf("the demo help does not say where the state is kept, under %s:\n%s", dataDir, d.stdout.Text())
		}
		if !strings.Contains(d.stdout.Text(), smartcarsim.TeslaID) {
			t.Errorf("the demo help does not name the vehicle:\n%s", d.stdout.Text())
		}
		tokens := map[string]bool{}
		grab := func() {
			for _, s := range tokenSecrets(where[1]) {
				tokens[s] = true
			}
		}
		grab()
		pages := driveSession(t, d, httpAddr, `endpoint="charge_port_door"`, grab)
		grab()
		if len(tokens) < 2 {
			t.Fatalf("only %d tokens collected from the token store: the audit would prove little", len(tokens))
		}
		audit(t, d, pages, map[string]string{"the client secret": "demo-secret"}, tokens)
	})
}

// driveSession plays Home Assistant against the running daemon: OPEN, a refresh,
// /metrics and /healthz, then SIGTERM. grab runs at each step, to collect the tokens
// of the moment. It returns the two pages.
func driveSession(t *testing.T, d *child, httpAddr, doorMetric string, grab func()) []string {
	t.Helper()
	m := listenField.FindStringSubmatch(d.stderr.WaitLine(t, "embedded MQTT broker started", 20*time.Second))
	if m == nil {
		t.Fatalf("no listen address in the broker's start line:\n%s", d.stderr.Text())
	}
	d.stderr.WaitLine(t, "connected to the MQTT broker", 20*time.Second)
	grab()

	type msg struct{ topic, payload string }
	var got itest.Record[msg]
	opts := mqtt.NewClientOptions().AddBroker("tcp://" + m[1]).SetClientID("audit-ha").
		SetUsername(auditBrokerUser).SetPassword(auditBrokerPassword).SetAutoReconnect(false)
	ha := mqtt.NewClient(opts)
	if tok := ha.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect to the daemon's broker at %s: %v", m[1], tok.Error())
	}
	defer ha.Disconnect(50)
	const base = "smartcar2mqtt/" + smartcarsim.TeslaID
	if tok := ha.Subscribe(base+"/#", 1, func(_ mqtt.Client, m mqtt.Message) {
		got.Add(msg{m.Topic(), string(m.Payload())})
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	waitMsg := func(after int, what string, ok func(msg) bool) int {
		t.Helper()
		found, waited := -1, false
		defer func() {
			// The wait fails the test with runtime.Goexit, which runs this: show
			// what did come instead.
			t.Helper()
			if !waited {
				t.Logf("got instead: %v", got.All())
			}
		}()
		got.WaitFor(t, what+" from the daemon", 20*time.Second, func(msgs []msg) bool {
			for i := after; i < len(msgs); i++ {
				if ok(msgs[i]) {
					found = i
					return true
				}
			}
			return false
		})
		waited = true
		return found
	}
	publish := func(topic, payload string) {
		t.Helper()
		if tok := ha.Publish(topic, 1, false, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %s: %v", topic, tok.Error())
		}
	}
	n := waitMsg(0, "closed door", func(m msg) bool { return m.topic == base+"/charge_port/state" && m.payload == "closed" })
	publish(base+"/charge_port/set", "OPEN")
	n = waitMsg(n, "open door", func(m msg) bool { return m.topic == base+"/charge_port/state" && m.payload == "open" })
	grab()
	pressed := time.Now()
	publish(base+"/refresh", "PRESS")
	waitMsg(n, "a read after the refresh", func(m msg) bool {
		var a struct {
			LastReadAt *time.Time `json:"last_read_at"`
		}
		return m.topic == base+"/charge_port/attributes" && json.Unmarshal([]byte(m.payload), &a) == nil &&
			a.LastReadAt != nil && !a.LastReadAt.Before(pressed)
	})
	grab()

	pages := fetchPages(t, httpAddr, "/metrics", "/healthz")
	if !strings.Contains(pages[0], doorMetric) {
		t.Errorf("/metrics does not count the door command (%s): the session did not happen as planned\n%s", doorMetric, pages[0])
	}
	d.stop(t)
	return pages
}

// audit looks for every secret, and for the head and tail of every token, in what
// the daemon printed and served.
func audit(t *testing.T, d *child, pages []string, needles map[string]string, tokens map[string]bool) {
	t.Helper()
	audited := map[string]string{
		"stdout": d.stdout.Text(), "stderr": d.stderr.Text(), "/metrics": pages[0], "/healthz": pages[1],
	}
	needles["the broker password"] = auditBrokerPassword
	i := 0
	for s := range tokens {
		i++
		kind := "an access token"
		if strings.HasPrefix(s, "sim-rt-") {
			kind = "a refresh token"
		}
		needles[fmt.Sprintf("%s (#%d)", kind, i)] = s
		// A token cut short in a log line is still a leak: look for its random part's
		// head and tail too.
		if random := s[strings.LastIndex(s, "-")+1:]; len(random) >= 24 {
			needles[fmt.Sprintf("the head of %s (#%d)", kind, i)] = random[:12]
			needles[fmt.Sprintf("the tail of %s (#%d)", kind, i)] = random[len(random)-12:]
		}
	}
	for where, text := range audited {
		for what, needle := range needles {
			if strings.Contains(text, needle) {
				t.Errorf("%s shows %s", where, what)
			}
		}
	}
	t.Logf("audited %d lines of stdout, %d of stderr, /metrics (%d bytes) and /healthz for %d secrets (%d tokens)",
		strings.Count(d.stdout.Text(), "\n")+1, strings.Count(d.stderr.Text(), "\n")+1, len(pages[0]), len(needles), len(tokens))
	if !strings.Contains(d.stderr.Text(), "level=debug") {
		t.Error("the run logged nothing at debug level: the audit would prove little")
	}
}
