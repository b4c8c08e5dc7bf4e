package main

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/smartcar2mqtt/smartcar2mqtt/config"
	"github.com/smartcar2mqtt/smartcar2mqtt/discovery"
	"github.com/smartcar2mqtt/smartcar2mqtt/internal/smartcarsim"
)

var (
	bannerBroker = regexp.MustCompile(`mosquitto_sub -h (\S+) -p ([0-9]+) `)
	bannerHTTP   = regexp.MustCompile(`http://(127\.0\.0\.1:[0-9]+)/healthz`)
)

// occupy makes addr taken for the rest of the test, as Mosquitto holds 1883 and
// some web UI holds 8080 on a Home Assistant host. Taken already by someone else
// does as well; any other failure to listen there skips the test.
func occupy(t *testing.T, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return
	case err != nil:
		t.Skipf("cannot take %s to play the program already there: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
}

// demoEnv is what every demo child gets: its temporary directory under the test's.
func demoEnv(t *testing.T, env ...string) []string {
	return append([]string{"TMPDIR=" + t.TempDir()}, env...)
}

// waitBanner waits for the demo to be up: the banner's last line on stdout and the
// bridge's connection on stderr. It returns the banner.
func waitBanner(t *testing.T, d *child) string {
	t.Helper()
	d.stdout.WaitLine(t, "Stop with Ctrl-C", 20*time.Second)
	d.stderr.WaitLine(t, "connected to the MQTT broker", 20*time.Second)
	return d.stdout.Text()
}

// On a Home Assistant host Mosquitto has 1883 and something has 8080: the demo,
// told nothing, takes free loopback ports instead and says which.
func TestDemoTakesFreePortsWhenTheDefaultsAreTaken(t *testing.T) {
	occupy(t, "127.0.0.1:1883")
	occupy(t, "127.0.0.1:8080")
	d := startDemo(t, demoEnv(t)...)
	banner := waitBanner(t, d)

	m := bannerBroker.FindStringSubmatch(banner)
	if m == nil || m[1] != "127.0.0.1" || m[2] == "1883" {
		t.Fatalf("the banner does not give a free loopback broker port:\n%s", banner)
	}
	brokerAddr := net.JoinHostPort(m[1], m[2])
	if started := d.stderr.WaitLine(t, "embedded MQTT broker started", time.Second); !strings.Contains(started, `listen="`+brokerAddr+`"`) {
		t.Errorf("the banner says %s, the broker started on: %s", brokerAddr, started)
	}
	for _, want := range []string{"127.0.0.1:1883 is in use", "127.0.0.1:8080 is in use", "loopback only"} {
		if !strings.Contains(banner, want) {
			t.Errorf("the banner lacks %q:\n%s", want, banner)
		}
	}
	h := bannerHTTP.FindStringSubmatch(banner)
	if h == nil || strings.HasSuffix(h[1], ":8080") {
		t.Fatalf("the banner does not give the free port of /healthz:\n%s", banner)
	}
	fetchPages(t, h[1], "/healthz")

	// The banner's broker is the demo's: the car's state is there, anonymously.
	state := make(chan string, 1)
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + brokerAddr).SetClientID("demo-test").SetAutoReconnect(false))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect to the banner's broker %s: %v", brokerAddr, tok.Error())
	}
	defer c.Disconnect(50)
	topic := discovery.VehicleTopics("smartcar2mqtt", smartcarsim.TeslaID).State
	if tok := c.Subscribe(topic, 1, func(_ mqtt.Client, m mqtt.Message) {
		select {
		case state <- string(m.Payload()):
		default:
		}
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", topic, tok.Error())
	}
	select {
	case s := <-state:
		t.Logf("%s: %s", topic, s)
	case <-time.After(20 * time.Second):
		t.Fatalf("no charge port state on %s within 20s", topic)
	}
	d.stop(t)
}

// An address the user chose is theirs: taken, it is one line saying so, before
// any banner, and exit 2 (a setting to change), not a free port in its place.
func TestDemoRefusesATakenAddressTheUserSet(t *testing.T) {
	for _, setting := range []string{"BROKER_LISTEN", "HTTP_LISTEN"} {
		t.Run(setting, func(t *testing.T) {
			taken := freeAddr(t)
			occupy(t, taken)
			code, stdout, stderr := runMain(t, demoEnv(t, setting+"="+taken), "demo")
			if code != exitBadConfig {
				t.Errorf("exit code %d, want %d\nstderr:\n%s", code, exitBadConfig, stderr)
			}
			if stdout != "" {
				t.Errorf("the banner was printed although the demo cannot start:\n%s", stdout)
			}
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], setting+" "+taken+" is in use") ||
				!strings.Contains(lines[0], "set "+setting+" to a free port") {
				t.Errorf("want one line saying %s %s is in use and to set another, got:\n%s", setting, taken, stderr)
			}
		})
	}
}

// externalBroker is the user's own broker, which Home Assistant already uses: a
// mochi broker that wants a username and password, and records who connected and
// every message published.
type externalBroker struct {
	mochi.HookBase
	user, password string

	mu      sync.Mutex
	clients []string            // client ids, in connection order
	topics  map[string][]byte   // the last payload of each topic
	changed chan struct{}       // closed and replaced at each message
	retain  map[string]struct{} // topics last published retained
}

func startExternalBroker(t *testing.T, user, password string) (*externalBroker, string) {
	t.Helper()
	b := &externalBroker{user: user, password: password, topics: map[string][]byte{}, retain: map[string]struct{}{}, changed: make(chan struct{})}
	server := mochi.New(&mochi.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := server.AddHook(b, nil); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := server.AddListener(listeners.NewNet("ha-broker", ln)); err != nil {
		t.Fatal(err)
	}
	if err := server.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return b, ln.Addr().String()
}

func (b *externalBroker) ID() string { return "user-broker" }

func (b *externalBroker) Provides(hook byte) bool {
	return hook == mochi.OnConnectAuthenticate || hook == mochi.OnACLCheck || hook == mochi.OnPublished
}

func (b *externalBroker) OnConnectAuthenticate(cl *mochi.Client, pk packets.Packet) bool {
	if string(pk.Connect.Username) != b.user || string(pk.Connect.Password) != b.password {
		return false
	}
	b.mu.Lock()
	b.clients = append(b.clients, cl.ID)
	b.mu.Unlock()
	return true
}

func (b *externalBroker) OnACLCheck(*mochi.Client, string, bool) bool { return true }

func (b *externalBroker) OnPublished(_ *mochi.Client, pk packets.Packet) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.topics[pk.TopicName] = slices.Clone(pk.Payload)
	if pk.FixedHeader.Retain {
		b.retain[pk.TopicName] = struct{}{}
	}
	close(b.changed)
	b.changed = make(chan struct{})
}

// waitTopic waits for a non-empty message on topic and returns it.
func (b *externalBroker) waitTopic(t *testing.T, topic string, timeout time.Duration) []byte {
	t.Helper()
	deadline := time.After(timeout)
	for {
		b.mu.Lock()
		payload, changed := b.topics[topic], b.changed
		b.mu.Unlock()
		if len(payload) > 0 {
			return payload
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("nothing on %s within %v; topics seen: %v", topic, timeout, b.seen())
		}
	}
}

func (b *externalBroker) seen() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for topic := range b.topics {
		out = append(out, topic)
	}
	slices.Sort(out)
	return out
}

// With MQTT_URL the demo goes where Home Assistant already listens, the user's own
// broker, under a base topic and client id of its own: a real smartcar2mqtt on the
// same broker keeps its topics and its connection.
func TestDemoPublishesToTheBrokerOfMQTTURL(t *testing.T) {
	const user, password = "ha-demo", "broker-pw-41d7c9"
	b, addr := startExternalBroker(t, user, password)
	d := startDemo(t, demoEnv(t, "MQTT_URL=tcp://"+addr, "MQTT_USERNAME="+user, "MQTT_PASSWORD="+password,
		"HTTP_LISTEN="+freeAddr(t))...)
	banner := waitBanner(t, d)

	config := b.waitTopic(t, discovery.ConfigTopic("homeassistant", smartcarsim.TeslaID), 20*time.Second)
	if !strings.Contains(string(config), `"smartcar2mqtt_demo/`) {
		t.Errorf("the discovery config does not point at smartcar2mqtt_demo/:\n%s", config)
	}
	b.waitTopic(t, discovery.VehicleTopics("smartcar2mqtt_demo", smartcarsim.TeslaID).State, 20*time.Second)
	if strings.Contains(d.stderr.Text(), "embedded MQTT broker started") {
		t.Error("the demo started its embedded broker although MQTT_URL is set")
	}
	d.stop(t)

	for _, topic := range b.seen() {
		if strings.HasPrefix(topic, "smartcar2mqtt/") {
			t.Errorf("the demo published under a real install's base topic: %s", topic)
		}
	}
	b.mu.Lock()
	clients := slices.Clone(b.clients)
	b.mu.Unlock()
	if len(clients) == 0 || slices.ContainsFunc(clients, func(id string) bool { return id != "smartcar2mqtt-demo" }) {
		t.Errorf("client ids %q, want only smartcar2mqtt-demo", clients)
	}

	host, port, _ := net.SplitHostPort(addr)
	for _, want := range []string{
		"mosquitto_sub -h " + host + " -p " + port + " -u " + user + " ",
		"mosquitto_pub -h " + host + " -p " + port + " -u " + user + " ",
		"'smartcar2mqtt_demo/#'",
		"add -P <password>",
		"MQTT integration",
	} {
		if !strings.Contains(banner, want) {
			t.Errorf("the banner lacks %q:\n%s", want, banner)
		}
	}
	for _, wrong := range []string{"Add integration", "loopback", "'smartcar2mqtt/"} {
		if strings.Contains(banner, wrong) {
			t.Errorf("the banner says %q, which is wrong with MQTT_URL:\n%s", wrong, banner)
		}
	}
	if strings.Contains(banner+d.stderr.Text(), password) {
		t.Error("the demo printed the broker password")
	}
}

// Ctrl-C is how the demo is meant to stop: exit 0, and its temporary directory gone.
// Once idle, and once in the middle of a command at the car.
func TestDemoStopsCleanlyOnCtrlC(t *testing.T) {
	for _, busy := range []bool{false, true} {
		name := map[bool]string{false: "idle", true: "during a command"}[busy]
		t.Run(name, func(t *testing.T) {
			tmp := t.TempDir()
			d := startDemo(t, "TMPDIR="+tmp, "BROKER_LISTEN=127.0.0.1:0", "HTTP_LISTEN="+freeAddr(t))
			banner := waitBanner(t, d)
			where := stateDir.FindStringSubmatch(banner)
			if where == nil || !strings.HasPrefix(where[1], tmp+string(filepath.Separator)) {
				t.Fatalf("the banner does not name a temporary directory under %s:\n%s", tmp, banner)
			}
			if busy {
				m := bannerBroker.FindStringSubmatch(banner)
				if m == nil {
					t.Fatalf("no broker address in the banner:\n%s", banner)
				}
				c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + net.JoinHostPort(m[1], m[2])).SetClientID("demo-test").SetAutoReconnect(false))
				if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
					t.Fatalf("connect: %v", tok.Error())
				}
				defer c.Disconnect(50)
				topics := discovery.VehicleTopics("smartcar2mqtt", smartcarsim.TeslaID)
				states := make(chan string, 16)
				if tok := c.Subscribe(topics.State, 1, func(_ mqtt.Client, m mqtt.Message) { states <- string(m.Payload()) }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
					t.Fatalf("subscribe: %v", tok.Error())
				}
				// The bridge serves the car once it has listed it and published its
				// state: only then does it take a command.
				waitState := func(want string) {
					t.Helper()
					deadline := time.After(20 * time.Second)
					for {
						select {
						case s := <-states:
							if want == "" || s == want {
								return
							}
						case <-deadline:
							t.Fatalf("no charge port state %q within 20s:\n%s", want, d.stderr.Text())
						}
					}
				}
				waitState("")
				if tok := c.Publish(topics.Command, 1, false, "OPEN"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
					t.Fatalf("publish OPEN: %v", tok.Error())
				}
				// The simulated car takes 2 s: the command is at the car once the
				// state says opening.
				waitState("opening")
			}
			d.cmd.Process.Signal(os.Interrupt)
			d.wait(t, 15*time.Second)
			if _, err := os.Stat(where[1]); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the demo's temporary directory %s is still there: %v", where[1], err)
			}
		})
	}
}

// The banner says who can reach the demo's anonymous broker, from the address it
// listens on: never "loopback only" for one the network reaches.
func TestDemoBannerSaysWhoReachesTheBroker(t *testing.T) {
	for _, tt := range []struct {
		listen   string
		loopback bool
		host     string // mosquitto_sub's -h
	}{
		{"127.0.0.1:1883", true, "127.0.0.1"},
		{"localhost:1883", true, "localhost"},
		{"[::1]:1883", true, "::1"},
		{":1883", false, "127.0.0.1"},
		{"0.0.0.0:1883", false, "127.0.0.1"},
		{"[::]:1883", false, "127.0.0.1"},
		{"192.0.2.7:1883", false, "192.0.2.7"},
	} {
		t.Run(tt.listen, func(t *testing.T) {
			cfg, err := config.LoadFrom("demo", func(key string) (string, bool) {
				v, ok := map[string]string{"BROKER_LISTEN": tt.listen}[key]
				return v, ok
			})
			if err != nil {
				t.Fatal(err)
			}
			var out strings.Builder
			printDemoHelp(&out, cfg, demoBanner{simulator: "http://127.0.0.1:1"})
			banner := out.String()
			if !strings.Contains(banner, "mosquitto_sub -h "+tt.host+" -p 1883 ") {
				t.Errorf("mosquitto_sub does not reach %s:\n%s", tt.host, banner)
			}
			if got := strings.Contains(banner, "loopback only"); got != tt.loopback {
				t.Errorf("says loopback only: %v, want %v:\n%s", got, tt.loopback, banner)
			}
			if !tt.loopback {
				for _, want := range []string{"reachable from the network", "without a username"} {
					if !strings.Contains(banner, want) {
						t.Errorf("the banner lacks %q:\n%s", want, banner)
					}
				}
			}
		})
	}
}

// The banner's mosquitto lines reach the broker of MQTT_URL as the demo does: its
// host and port (the scheme's default when the URL has none), TLS with the CA the
// demo trusts, the username quoted for the shell, never the password.
func TestDemoMosquittoArgsFollowMQTTURL(t *testing.T) {
	for _, tt := range []struct {
		env       map[string]string
		args      string
		websocket bool
	}{
		{map[string]string{"MQTT_URL": "tcp://ha.lan"}, "-h ha.lan -p 1883", false},
		{map[string]string{"MQTT_URL": "mqtt://[fd00::1]:1884", "MQTT_USERNAME": "ha", "MQTT_PASSWORD": "pw-5e1d"}, "-h fd00::1 -p 1884 -u ha", false},
		{map[string]string{"MQTT_URL": "ssl://ha.lan", "MQTT_USERNAME": "my user"}, "-h ha.lan -p 8883 --capath /etc/ssl/certs -u 'my user'", false},
		{map[string]string{"MQTT_URL": "wss://ha.lan/mqtt"}, "-h ha.lan --capath /etc/ssl/certs", true},
	} {
		t.Run(tt.env["MQTT_URL"], func(t *testing.T) {
			cfg, err := config.LoadFrom("demo", func(key string) (string, bool) {
				v, ok := tt.env[key]
				return v, ok
			})
			if err != nil {
				t.Fatal(err)
			}
			args, note := externalBrokerArgs(cfg)
			if args != tt.args {
				t.Errorf("args %q, want %q", args, tt.args)
			}
			if got := strings.Contains(note, "WebSocket"); got != tt.websocket {
				t.Errorf("note %q: says WebSocket %v, want %v", note, got, tt.websocket)
			}
			if strings.Contains(args, "pw-5e1d") {
				t.Errorf("the arguments show the password: %s", args)
			}
		})
	}
}
