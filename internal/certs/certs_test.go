package certs

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func pool(t *testing.T, caPath string) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(caPath)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		t.Fatal("CA file holds no certificate")
	}
	return p
}

func verify(t *testing.T, c tls.Certificate, roots *x509.CertPool, name string) error {
	t.Helper()
	return verifyAt(t, c, roots, name, time.Now())
}

func verifyAt(t *testing.T, c tls.Certificate, roots *x509.CertPool, name string, at time.Time) error {
	t.Helper()
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: name, CurrentTime: at})
	return err
}

func TestDevelopmentCertificate(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	c, caPath, err := Development(dir, Names("frost.localhost"), now)
	if err != nil {
		t.Fatal(err)
	}
	roots := pool(t, caPath)
	for _, name := range []string{"frost.localhost", "app.frost.localhost", "8000-abc.frost.localhost", "localhost", "127.0.0.1", "::1"} {
		if err := verify(t, c, roots, name); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, name := range []string{"example.com", "a.b.frost.localhost", "frost.localhost.evil.com", "10.0.0.1"} {
		if verify(t, c, roots, name) == nil {
			t.Errorf("%s verified; it is not one of the certificate's names", name)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, caKey)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("CA key: %v, mode %v; want 0600", err, fi.Mode())
	}
	if fi, err := os.Stat(filepath.Join(dir, keyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key: %v, mode %v; want 0600", err, fi.Mode())
	}

	// A restart keeps both.
	again, caPath2, err := Development(dir, Names("frost.localhost"), now)
	if err != nil || caPath2 != caPath {
		t.Fatal(err, caPath2)
	}
	if string(again.Certificate[0]) != string(c.Certificate[0]) {
		t.Error("a restart made a new certificate for the same names")
	}

	// Near expiry, the leaf is renewed under the same CA.
	at := now.Add(leafLife - leafRenew + time.Hour)
	later, _, err := Development(dir, Names("frost.localhost"), at)
	if err != nil {
		t.Fatal(err)
	}
	if string(later.Certificate[0]) == string(c.Certificate[0]) {
		t.Error("a certificate near its expiry was not renewed")
	}
	if err := verifyAt(t, later, roots, "x.frost.localhost", at); err != nil {
		t.Errorf("renewed certificate under the kept CA: %v", err)
	}
}

func TestDevelopmentCertificateNewNames(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	_, caPath, err := Development(dir, Names("frost.localhost"), now)
	if err != nil {
		t.Fatal(err)
	}
	oldRoots := pool(t, caPath)

	// A subdomain of a name the CA covers: same CA, new leaf.
	c, _, err := Development(dir, Names("eu.frost.localhost"), now)
	if err != nil {
		t.Fatal(err)
	}
	if err := verify(t, c, oldRoots, "app.eu.frost.localhost"); err != nil {
		t.Errorf("subdomain under the kept CA: %v", err)
	}

	// A domain outside the CA's constraints: a new CA.
	c, caPath, err = Development(dir, Names("example.test"), now)
	if err != nil {
		t.Fatal(err)
	}
	if verify(t, c, oldRoots, "app.example.test") == nil {
		t.Error("the old CA, constrained to frost.localhost, signed example.test")
	}
	if err := verify(t, c, pool(t, caPath), "app.example.test"); err != nil {
		t.Errorf("new CA: %v", err)
	}
}

// TestDevelopmentCertificateDamaged: unreadable files are replaced, not
// served and not fatal.
func TestDevelopmentCertificateDamaged(t *testing.T) {
	for _, name := range []string{certFile, keyFile, CAFile, caKey} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if _, _, err := Development(dir, Names("frost.localhost"), time.Now()); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, name), []byte("not PEM"), 0o600); err != nil {
				t.Fatal(err)
			}
			c, caPath, err := Development(dir, Names("frost.localhost"), time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if err := verify(t, c, pool(t, caPath), "a.frost.localhost"); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestHandshake serves HTTPS with the development certificate and
// fetches through a client that trusts only the CA file.
func TestHandshake(t *testing.T) {
	c, caPath, err := Development(t.TempDir(), Names("frost.localhost"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{c}})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Host) })}
	go srv.Serve(ln)
	defer srv.Close()
	addr := ln.Addr().String()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool(t, caPath)}}}
	_, port, _ := net.SplitHostPort(addr)
	// 127.0.0.1 is among the names; a wildcard name is checked through
	// ServerName.
	resp, err := hc.Get("https://127.0.0.1:" + port + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool(t, caPath), ServerName: "app.frost.localhost"})
	if err != nil {
		t.Fatalf("handshake for app.frost.localhost: %v", err)
	}
	conn.Close()
	if _, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: x509.NewCertPool(), ServerName: "app.frost.localhost"}); err == nil {
		t.Error("a client that does not trust the CA completed the handshake")
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := Development(dir, Names("frost.localhost"), time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(filepath.Join(dir, certFile), filepath.Join(dir, keyFile)); err != nil {
		t.Error(err)
	}
	if _, err := Load(filepath.Join(dir, certFile), filepath.Join(dir, caKey)); err == nil {
		t.Error("a key that is not the certificate's loaded")
	}
}
