package bridge

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/smartcar2mqtt/smartcar2mqtt/discovery"
	"github.com/smartcar2mqtt/smartcar2mqtt/internal/itest"
	"github.com/smartcar2mqtt/smartcar2mqtt/internal/smartcarsim"
)

func TestMQTTCAFile(t *testing.T) {
	dir := t.TempDir()
	certFile, _ := itest.SelfSignedCert(t, dir, "127.0.0.1")
	notPEM := filepath.Join(dir, "not.pem")
	os.WriteFile(notPEM, []byte("hello"), 0o600)
	for _, tt := range []struct {
		url, ca string
		ok      bool
	}{
		{"ssl://127.0.0.1:8883", certFile, true},
		{"ssl://127.0.0.1:8883", notPEM, false},
		{"ssl://127.0.0.1:8883", filepath.Join(dir, "missing.pem"), false},
		{"tcp://127.0.0.1:1883", "", true},
	} {
		_, err := New(nil, nil, Options{MQTT: MQTTOptions{URL: tt.url, CAFile: tt.ca, ClientID: "x"}, BaseTopic: base, DiscoveryPrefix: prefix, HAStatusTopic: haStatus,
			Origin: discovery.Origin{Name: "smartcar2mqtt"}, Log: testLog(t)})
		if (err == nil) != tt.ok {
			t.Errorf("New(%s, CA %s) error = %v, want ok=%v", tt.url, filepath.Base(tt.ca), err, tt.ok)
		}
	}
}

// TLS to an external broker: mosquitto with a certificate from a CA made here, the
// bridge trusting that CA through MQTT_CA_FILE (and refusing the broker without it).
func TestExternalBrokerOverTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := itest.SelfSignedCert(t, dir, "127.0.0.1")
	opts := fmt.Sprintf("certfile %s\nkeyfile %s\n", certFile, keyFile)
	if os.Geteuid() == 0 {
		// As root, mosquitto drops to its own user before reading the key, which
		// then cannot enter the test's private temp dir.
		opts = "user root\n" + opts
	}
	m := itest.NewMosquitto(t, "ssl", opts)
	e := newEnv(t, "mochi", smartcarsim.Options{}) // the simulator and data dir; the bridge uses mosquitto
	e.broker.Close()
	e.mqtt = MQTTOptions{URL: m.URL(), CAFile: certFile, ClientID: "smartcar2mqtt-tls-test"}
	e.userURL, e.user, e.pass = "", "", ""
	e.startBridge()

	trustCA := func(o *mqtt.ClientOptions) {
		o.SetTLSConfig(&tls.Config{RootCAs: itest.CertPool(t, certFile), MinVersion: tls.VersionTLS12})
	}
	r := connectRecorderWith(t, m.URL(), "", "", trustCA, base+"/#")
	n := ready(r, "closed")
	r.publish(teslaTopics.Command, false, "OPEN")
	r.waitPayload(n, teslaTopics.State, "open")

	// Without the CA the broker's certificate is not trusted.
	untrusted := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(m.URL()).SetClientID("no-ca").SetAutoReconnect(false).
		SetTLSConfig(&tls.Config{RootCAs: x509.NewCertPool(), MinVersion: tls.VersionTLS12}))
	if tok := untrusted.Connect(); tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
		untrusted.Disconnect(0)
		t.Error("a client without the CA connected")
	}
}
