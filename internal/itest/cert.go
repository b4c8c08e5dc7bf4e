package itest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// KeyPair is a fresh ECDSA P-256 key (PKCS #8) and its self-signed certificate,
// in PEM. The certificate is its own CA, so the same file serves a TLS listener
// and the client that must trust it (MQTT_CA_FILE).
type KeyPair struct {
	CertPEM, KeyPEM []byte
}

// NewKeyPair makes a KeyPair whose certificate names hosts: each is an IP
// address or a DNS name, as a client dialling it would check.
func NewKeyPair(tb testing.TB, hosts ...string) KeyPair {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	// A random serial: RFC 5280 wants serials unique per issuer, and a test may
	// make two pairs for one host (a chain, a mismatched key) that a verifier
	// must not take for one certificate.
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "smartcar2mqtt test"},
		NotBefore:             time.Now().Add(-time.Hour), // tolerant of a clock a little behind
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	if len(hosts) > 0 {
		tmpl.Subject.CommonName = hosts[0]
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	return KeyPair{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}),
	}
}

// SelfSignedCert writes a fresh KeyPair for hosts into dir, as cert.pem and
// key.pem, and returns their paths. The certificate file is also the CA file
// a client trusts the listener with.
func SelfSignedCert(tb testing.TB, dir string, hosts ...string) (certFile, keyFile string) {
	tb.Helper()
	p := NewKeyPair(tb, hosts...)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, p.CertPEM, 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(keyFile, p.KeyPEM, 0o600); err != nil {
		tb.Fatal(err)
	}
	return certFile, keyFile
}

// CertPool is a pool trusting the certificates in certFile, for a test client.
func CertPool(tb testing.TB, certFile string) *x509.CertPool {
	tb.Helper()
	data, err := os.ReadFile(certFile)
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		tb.Fatal("no certificate in", certFile)
	}
	return pool
}
