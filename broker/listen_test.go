package broker

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/smartcar2mqtt/smartcar2mqtt/internal/itest"
)

// A listener that cannot start is a *ListenError naming the setting, its value and
// the reason once, so that main can exit with the configuration's code; and the
// broker leaves nothing listening behind.
func TestListenErrorsNameTheSetting(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := selfSigned(t, dir)
	_, otherKey, _ := selfSigned(t, t.TempDir())
	notPEM := filepath.Join(dir, "not.pem")
	os.WriteFile(notPEM, []byte("not a certificate"), 0o600)
	missing := filepath.Join(dir, "missing.pem")

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	inUse := busy.Addr().String()
	free := freeAddr(t)

	tests := []struct {
		name    string
		opts    Options
		setting string
		value   string
		message string
		is      error
	}{
		{"port in use", Options{Listen: inUse}, "BROKER_LISTEN", inUse,
			fmt.Sprintf("BROKER_LISTEN %q: address already in use", inUse), syscall.EADDRINUSE},
		{"TLS port in use", Options{Listen: free, TLSListen: inUse, TLSCert: certFile, TLSKey: keyFile}, "BROKER_TLS_LISTEN", inUse,
			fmt.Sprintf("BROKER_TLS_LISTEN %q: address already in use", inUse), syscall.EADDRINUSE},
		{"certificate missing", Options{Listen: free, TLSListen: "127.0.0.1:0", TLSCert: missing, TLSKey: keyFile}, "BROKER_TLS_CERT", missing,
			fmt.Sprintf("BROKER_TLS_CERT %q: no such file or directory", missing), os.ErrNotExist},
		{"certificate not PEM", Options{Listen: free, TLSListen: "127.0.0.1:0", TLSCert: notPEM, TLSKey: keyFile}, "BROKER_TLS_CERT", notPEM,
			fmt.Sprintf("BROKER_TLS_CERT %q: no PEM certificate in the file", notPEM), nil},
		{"key missing", Options{Listen: free, TLSListen: "127.0.0.1:0", TLSCert: certFile, TLSKey: missing}, "BROKER_TLS_KEY", missing,
			fmt.Sprintf("BROKER_TLS_KEY %q: no such file or directory", missing), os.ErrNotExist},
		{"key not PEM", Options{Listen: free, TLSListen: "127.0.0.1:0", TLSCert: certFile, TLSKey: notPEM}, "BROKER_TLS_KEY", notPEM,
			fmt.Sprintf("BROKER_TLS_KEY %q: tls: failed to find any PEM data in key input", notPEM), nil},
		{"key of another certificate", Options{Listen: free, TLSListen: "127.0.0.1:0", TLSCert: certFile, TLSKey: otherKey}, "BROKER_TLS_KEY", otherKey,
			fmt.Sprintf("BROKER_TLS_KEY %q: tls: private key does not match public key", otherKey), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.AllowAnonymous, tt.opts.DataDir, tt.opts.BaseTopic, tt.opts.Log = true, t.TempDir(), base, testLog(t)
			b, err := Start(tt.opts)
			if err == nil {
				b.Close()
				t.Fatal("started")
			}
			var le *ListenError
			if !errors.As(err, &le) {
				t.Fatalf("%T %v, want a *ListenError", err, err)
			}
			if le.Setting != tt.setting || le.Addr != tt.value {
				t.Errorf("Setting %q Addr %q, want %q %q", le.Setting, le.Addr, tt.setting, tt.value)
			}
			if err.Error() != tt.message {
				t.Errorf("message %q\nwant    %q", err, tt.message)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("not errors.Is %v", tt.is)
			}
			// Nothing left listening: the public address can be taken again.
			if tt.opts.Listen == free {
				l, err := net.Listen("tcp", free)
				if err != nil {
					t.Fatalf("the public listener was left open: %v", err)
				}
				l.Close()
			}
		})
	}
}

// freeAddr is a loopback address with a port nothing listens on right now.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// With BROKER_TLS_CERT/KEY the broker also speaks MQTT over TLS, with the same
// accounts.
func TestBrokerTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	b := startBroker(t, Options{TLSListen: "127.0.0.1:0", TLSCert: certFile, TLSKey: keyFile, DataDir: dir})
	if b.TLSAddr() == nil {
		t.Fatal("no TLS listener")
	}
	connect := func(pass string) error {
		c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("ssl://" + b.TLSAddr().String()).
			SetUsername(haUser).SetPassword(pass).SetClientID("tls-test").SetAutoReconnect(false).
			SetTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
		tok := c.Connect()
		if !tok.WaitTimeout(10 * time.Second) {
			return os.ErrDeadlineExceeded
		}
		if tok.Error() == nil {
			c.Disconnect(0)
		}
		return tok.Error()
	}
	if err := connect(haPass); err != nil {
		t.Errorf("TLS connect with Home Assistant's account: %v", err)
	}
	if err := connect("wrong"); err == nil {
		t.Error("TLS connect with a wrong password was let in")
	}

	// A TLS client still connected at Close, and one that connected but never
	// finished its handshake, do not hold Close up.
	idle, err := net.Dial("tcp", b.TLSAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("ssl://" + b.TLSAddr().String()).
		SetUsername(haUser).SetPassword(haPass).SetClientID("tls-stay").SetAutoReconnect(false).
		SetTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	b.Close()
	idle.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := idle.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("the connection without handshake: %v, want it closed", err)
	}
}

func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	certFile, keyFile = itest.SelfSignedCert(t, dir, "127.0.0.1")
	return certFile, keyFile, itest.CertPool(t, certFile)
}
