package certs

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// copyPair writes the development pair in from into cert and key, as a
// renewal tool writes the user's files.
func copyPair(t *testing.T, from, cert, key string) {
	t.Helper()
	for src, dst := range map[string]string{certFile: cert, keyFile: key} {
		b, err := os.ReadFile(filepath.Join(from, src))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFilesReloaded: the user's files written anew are served from the
// next check on; a pair that does not load leaves the one in use serving,
// is counted once, and is tried again when the files change again.
func TestFilesReloaded(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	for _, d := range []string{a, b} {
		if _, _, err := Development(d, Names("frost.localhost"), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	copyPair(t, a, cert, key)
	s, err := Files(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	serial := func() string {
		c, _ := s.GetCertificate(nil)
		return c.Leaf.SerialNumber.String()
	}
	first := serial()
	if reloaded, err := s.Check(time.Now()); reloaded || err != nil {
		t.Fatalf("a check with nothing changed: %v %v", reloaded, err)
	}

	// Renewed: a new certificate and key.
	time.Sleep(10 * time.Millisecond) // a later modification time
	copyPair(t, b, cert, key)
	if reloaded, err := s.Check(time.Now()); !reloaded || err != nil || serial() == first {
		t.Fatalf("after a renewal: reloaded %v, err %v, serial %s (was %s)", reloaded, err, serial(), first)
	}
	renewed := serial()

	// Half written: the key is the old one's.
	time.Sleep(10 * time.Millisecond)
	kb, _ := os.ReadFile(filepath.Join(a, keyFile))
	os.WriteFile(key, kb, 0o600)
	if reloaded, err := s.Check(time.Now()); reloaded || err == nil || serial() != renewed {
		t.Fatalf("a key that is not the certificate's: reloaded %v, err %v, serial %s (want %s kept)", reloaded, err, serial(), renewed)
	}
	if reloaded, err := s.Check(time.Now()); reloaded || err != nil || s.Failures() != 1 {
		t.Fatalf("the same broken pair checked again: %v %v, %d failures; want it left alone", reloaded, err, s.Failures())
	}
	// The rest of the write lands.
	time.Sleep(10 * time.Millisecond)
	copyPair(t, a, cert, key)
	if reloaded, err := s.Check(time.Now()); !reloaded || err != nil || serial() != first || s.Reloads() != 2 {
		t.Fatalf("the pair complete again: %v %v, serial %s (want %s), %d reloads", reloaded, err, serial(), first, s.Reloads())
	}

	// Files gone: the one in use stays.
	os.Remove(cert)
	if _, err := s.Check(time.Now()); err == nil || serial() != first {
		t.Fatalf("files removed: %v, serial %s", err, serial())
	}
}

// TestDevRenewed: the development certificate is issued again once it is
// within its renewal window, not before.
func TestDevRenewed(t *testing.T) {
	now := time.Now()
	s, caFile, err := Dev(t.TempDir(), Names("frost.localhost"), now)
	if err != nil {
		t.Fatal(err)
	}
	old := s.NotAfter()
	if reloaded, err := s.Check(now.Add(24 * time.Hour)); reloaded || err != nil {
		t.Fatalf("a day on: %v %v, want nothing done", reloaded, err)
	}
	later := old.Add(-leafRenew + time.Hour)
	if reloaded, err := s.Check(later); !reloaded || err != nil || !s.NotAfter().After(old) {
		t.Fatalf("within the renewal window: %v %v, expires %v (was %v)", reloaded, err, s.NotAfter(), old)
	}
	c, _ := s.GetCertificate(nil)
	if err := verifyAt(t, *c, pool(t, caFile), "app.frost.localhost", later); err != nil {
		t.Fatalf("the renewed certificate: %v", err)
	}
}
