package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// A Source is a TLS listener's certificate, kept current while the server
// runs: the user's files loaded again when they change on disk (a
// renewal by certbot or cert-manager writes new ones), the development
// certificate issued again before it expires. A change that does not load
// (a pair half written, a key that is not the certificate's) leaves the
// certificate in use serving, and is counted and logged once; the files
// are tried again when they change again.
type Source struct {
	cur atomic.Pointer[tls.Certificate]

	// load reads the certificate anew; stamp says what the files on disk
	// are now (a changed stamp means a reload), or, for a certificate
	// Frost makes, "" (it is checked for its expiry instead).
	load  func(now time.Time) (tls.Certificate, error)
	stamp func() string

	mu       sync.Mutex // one check at a time
	last     string     // the stamp last tried
	reloads  atomic.Uint64
	failures atomic.Uint64
}

// Files returns a Source for the user's certificate chain and key (PEM).
func Files(cert, key string) (*Source, error) {
	s := &Source{
		load: func(time.Time) (tls.Certificate, error) { return Load(cert, key) },
		stamp: func() string {
			return fileStamp(cert) + "|" + fileStamp(key)
		},
	}
	s.last = s.stamp()
	c, err := s.load(time.Now())
	if err != nil {
		return nil, err
	}
	s.set(c)
	return s, nil
}

// Dev returns a Source for the development certificate for names, signed
// by the CA in dir (see Development), and the path of the CA's file.
func Dev(dir string, names []string, now time.Time) (*Source, string, error) {
	var caFile string
	s := &Source{load: func(now time.Time) (tls.Certificate, error) {
		c, f, err := Development(dir, names, now)
		caFile = f
		return c, err
	}}
	c, err := s.load(now)
	if err != nil {
		return nil, "", err
	}
	s.set(c)
	return s, caFile, nil
}

// fileStamp is what changes when a file is written anew: its size and
// modification time ("" if it cannot be read).
func fileStamp(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%d@%d", fi.Size(), fi.ModTime().UnixNano())
}

func (s *Source) set(c tls.Certificate) {
	if c.Leaf == nil && len(c.Certificate) > 0 {
		c.Leaf, _ = x509.ParseCertificate(c.Certificate[0])
	}
	s.cur.Store(&c)
}

// GetCertificate is the tls.Config hook: the certificate now.
func (s *Source) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.cur.Load(), nil
}

// NotAfter is when the certificate in use expires.
func (s *Source) NotAfter() time.Time {
	if c := s.cur.Load(); c.Leaf != nil {
		return c.Leaf.NotAfter
	}
	return time.Time{}
}

// Reloads and Failures count the certificates loaded anew while serving
// and the changes that would not load.
func (s *Source) Reloads() uint64  { return s.reloads.Load() }
func (s *Source) Failures() uint64 { return s.failures.Load() }

// Check loads the certificate anew if its files changed since the last
// check (or, for the development one, if it is within its renewal
// window at now) and puts it in use, saying whether it did. On an error
// the certificate in use stays.
func (s *Source) Check(now time.Time) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stamp != nil {
		st := s.stamp()
		if st == s.last {
			return false, nil
		}
		s.last = st
	} else if now.Add(leafRenew).Before(s.NotAfter()) {
		return false, nil
	}
	c, err := s.load(now)
	if err != nil {
		s.failures.Add(1)
		return false, err
	}
	s.set(c)
	s.reloads.Add(1)
	return true, nil
}

// Run checks every interval until ctx ends, logging what each check did.
func (s *Source) Run(ctx context.Context, every time.Duration, logger *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			switch reloaded, err := s.Check(now); {
			case err != nil:
				logger.Error("TLS: the changed certificate does not load; serving the one in use", "err", err, "expires", s.NotAfter())
			case reloaded:
				logger.Info("TLS: certificate loaded anew", "expires", s.NotAfter())
			}
		}
	}
}
