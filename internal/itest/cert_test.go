package itest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"testing"
)

// The pair loads as a TLS listener's, and a client trusting the certificate
// file accepts it for each host named, and for no other.
func TestSelfSignedCert(t *testing.T) {
	certFile, keyFile := SelfSignedCert(t, t.TempDir(), "127.0.0.1", "broker.test")
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pool := CertPool(t, certFile)
	for host, ok := range map[string]bool{"127.0.0.1": true, "broker.test": true, "127.0.0.2": false, "other.test": false} {
		_, err := cert.Verify(x509.VerifyOptions{DNSName: host, Roots: pool})
		if (err == nil) != ok {
			t.Errorf("verify for %s: %v, want ok=%v", host, err, ok)
		}
	}
	// Two pairs are two keys: a test's mismatched key must really not match.
	a, b := NewKeyPair(t, "broker.test"), NewKeyPair(t, "broker.test")
	if _, err := tls.X509KeyPair(a.CertPEM, b.KeyPEM); err == nil {
		t.Error("one pair's certificate matches another pair's key")
	}
	if blk, _ := pem.Decode(a.KeyPEM); blk == nil || blk.Type != "PRIVATE KEY" {
		t.Errorf("the key is not PKCS #8 PEM: %q", a.KeyPEM)
	}
}
