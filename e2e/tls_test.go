package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/frostdev/frost/internal/certs"
	"github.com/frostdev/frost/internal/testguest"
)

// TestTLSCertificateRenewed: `frost server --tls-cert --tls-key` serves
// certificate files written anew while it runs (a renewal by certbot or
// cert-manager), without a restart; a pair that does not load (a key that
// is not the certificate's) is counted and the certificate in use keeps
// serving. /metrics says when the certificate in use expires.
func TestTLSCertificateRenewed(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	type pair struct {
		cert  tls.Certificate
		roots *x509.CertPool
	}
	var pairs []pair
	for range 2 {
		c, caFile, err := certs.Development(t.TempDir(), certs.Names("localhost"), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(caFile)
		if err != nil {
			t.Fatal(err)
		}
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(b)
		pairs = append(pairs, pair{c, roots})
	}
	write := func(c tls.Certificate, key tls.Certificate) {
		t.Helper()
		var chain []byte
		for _, der := range c.Certificate {
			chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
		}
		k, err := x509.MarshalPKCS8PrivateKey(key.PrivateKey)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(certPath, chain, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(pairs[0].cert, pairs[0].cert)
	s := startServer(t, "", "--https", "127.0.0.1:0", "--tls-cert", certPath, "--tls-key", keyPath, "--tls-reload", "100ms")
	s.mustFrost("deploy", "hello", testguest.Path(t, "hello-c"))
	// served is the serial of the certificate a new connection gets, if
	// it verifies against roots.
	served := func(roots *x509.CertPool) (string, error) {
		c, err := tls.Dial("tcp", s.https, &tls.Config{ServerName: "hello.localhost", RootCAs: roots})
		if err != nil {
			return "", err
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String(), nil
	}
	metric := func(name string) float64 {
		_, m := s.apiReq("GET", "/metrics", "", nil)
		return metricValue(m, name)
	}
	if got, err := served(pairs[0].roots); err != nil || got != pairs[0].cert.Leaf.SerialNumber.String() {
		t.Fatalf("at start: %s %v, want the first certificate", got, err)
	}

	// Renewed on disk: new connections get the new certificate.
	write(pairs[1].cert, pairs[1].cert)
	waitFor(t, "the renewed certificate to be served", func() bool {
		got, err := served(pairs[1].roots)
		return err == nil && got == pairs[1].cert.Leaf.SerialNumber.String()
	})
	if v := metric("frost_tls_certificate_expiry_timestamp_seconds"); v != float64(pairs[1].cert.Leaf.NotAfter.Unix()) {
		t.Errorf("expiry metric %v, want the renewed certificate's %d", v, pairs[1].cert.Leaf.NotAfter.Unix())
	}
	if v := metric("frost_tls_certificate_reloads_total"); v < 1 {
		t.Errorf("reloads_total %v after a renewal", v)
	}

	// A broken pair: the renewed certificate with the first key. (The
	// renewal above may have been seen half written, a failure too.)
	failures := metric("frost_tls_certificate_reload_failures_total")
	write(pairs[1].cert, pairs[0].cert)
	waitFor(t, "the broken pair to be noticed", func() bool {
		return metric("frost_tls_certificate_reload_failures_total") > failures
	})
	if got, err := served(pairs[1].roots); err != nil || got != pairs[1].cert.Leaf.SerialNumber.String() {
		t.Fatalf("after a broken pair was written: %s %v, want the renewed certificate still", got, err)
	}
	if resp, body := s.get("hello", "/"); resp.StatusCode != 200 {
		t.Fatalf("hello after the broken pair: %d %q", resp.StatusCode, body)
	}
	t.Logf("reloads %s, failures %s", strconv.FormatFloat(metric("frost_tls_certificate_reloads_total"), 'f', 0, 64),
		strconv.FormatFloat(metric("frost_tls_certificate_reload_failures_total"), 'f', 0, 64))
}
