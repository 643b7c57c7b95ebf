// Package certs gives Frost's TLS listener its certificate: the user's
// certificate and key files, or, when none are given, a development
// certificate for the server's names (DOMAIN, *.DOMAIN, localhost and the
// loopback addresses) signed by a local certificate authority kept in the
// data directory. A client trusts the development certificate by trusting
// that CA's file: curl --cacert, NODE_EXTRA_CA_CERTS, SSL_CERT_FILE.
//
// The CA is name-constrained to the names it was made for, so that a
// user who trusts it trusts it for nothing else; when the server is
// started for names outside them, a new CA replaces it.
//
// A Source keeps the certificate current while the server runs: the
// user's files loaded again when a renewal writes them anew, the
// development certificate issued again before it expires.
package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Files in a development certificate directory.
const (
	CAFile   = "ca.pem"
	caKey    = "ca.key"
	certFile = "dev.pem"
	keyFile  = "dev.key"
)

// How long development certificates last, and how long before expiry a
// leaf is renewed.
const (
	caLife    = 10 * 365 * 24 * time.Hour
	leafLife  = 397 * 24 * time.Hour
	leafRenew = 30 * 24 * time.Hour
)

// Load reads a certificate chain and its key from PEM files.
func Load(cert, key string) (tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("TLS certificate %s / key %s: %w", cert, key, err)
	}
	return c, nil
}

// Names returns the names a server for domain answers to: the domain,
// every name under it, localhost and the loopback addresses.
func Names(domain string) []string {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	names := []string{domain, "*." + domain, "localhost", "127.0.0.1", "::1"}
	slices.Sort(names)
	return slices.Compact(names)
}

// Development returns a certificate for names (DNS names, "*.name"
// wildcards, IP addresses) signed by the development CA in dir, making
// the CA and the certificate as needed, and the path of the CA's file.
// A certificate that is missing, unreadable, for other names, from
// another CA or near its expiry is made anew; the CA is kept while it is
// valid and covers names.
func Development(dir string, names []string, now time.Time) (tls.Certificate, string, error) {
	if len(names) == 0 {
		return tls.Certificate{}, "", errors.New("development certificate: no names")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return tls.Certificate{}, "", err
	}
	ca, caPriv, err := loadCA(dir, names, now)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	if c, err := tls.LoadX509KeyPair(filepath.Join(dir, certFile), filepath.Join(dir, keyFile)); err == nil && fresh(c, ca, names, now) {
		return c, filepath.Join(dir, CAFile), nil
	}
	leaf, priv, err := issue(ca, caPriv, names, now)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	if err := writePair(dir, certFile, keyFile, append(pemCert(leaf), pemCert(ca.Raw)...), priv); err != nil {
		return tls.Certificate{}, "", err
	}
	c, err := tls.LoadX509KeyPair(filepath.Join(dir, certFile), filepath.Join(dir, keyFile))
	return c, filepath.Join(dir, CAFile), err
}

// loadCA returns the CA in dir, or a new one when there is none, it is
// unreadable, expiring within a leaf's life, or does not cover names.
func loadCA(dir string, names []string, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	if ca, priv, err := readPair(filepath.Join(dir, CAFile), filepath.Join(dir, caKey)); err == nil &&
		ca.IsCA && now.Add(leafLife).Before(ca.NotAfter) && covers(ca, names) {
		return ca, priv, nil
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	host, _ := os.Hostname()
	tmpl := &x509.Certificate{
		SerialNumber:                serial(),
		Subject:                     pkix.Name{Organization: []string{"Frost development"}, CommonName: "Frost development CA (" + host + ")"},
		NotBefore:                   now.Add(-time.Hour),
		NotAfter:                    now.Add(caLife),
		KeyUsage:                    x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid:       true,
		IsCA:                        true,
		MaxPathLenZero:              true,
		PermittedDNSDomainsCritical: true,
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			bits := 8 * len(ip.To4())
			if bits == 0 {
				bits = 128
			}
			tmpl.PermittedIPRanges = append(tmpl.PermittedIPRanges, &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)})
		} else if n = strings.TrimPrefix(n, "*."); !slices.Contains(tmpl.PermittedDNSDomains, n) {
			tmpl.PermittedDNSDomains = append(tmpl.PermittedDNSDomains, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, priv.Public(), priv)
	if err != nil {
		return nil, nil, err
	}
	if err := writePair(dir, CAFile, caKey, pemCert(der), priv); err != nil {
		return nil, nil, err
	}
	ca, err := x509.ParseCertificate(der)
	return ca, priv, err
}

// covers says whether ca's name constraints admit every name.
func covers(ca *x509.Certificate, names []string) bool {
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			if !slices.ContainsFunc(ca.PermittedIPRanges, func(r *net.IPNet) bool { return r.Contains(ip) }) {
				return false
			}
			continue
		}
		n = strings.TrimPrefix(n, "*.")
		if !slices.ContainsFunc(ca.PermittedDNSDomains, func(d string) bool { return n == d || strings.HasSuffix(n, "."+d) }) {
			return false
		}
	}
	return true
}

// issue makes a leaf for names signed by ca.
func issue(ca *x509.Certificate, caPriv crypto.Signer, names []string, now time.Time) ([]byte, crypto.Signer, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{Organization: []string{"Frost development"}, CommonName: names[0]},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(leafLife),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, priv.Public(), caPriv)
	return der, priv, err
}

// fresh says whether c is ca's certificate for exactly names and is not
// near its expiry.
func fresh(c tls.Certificate, ca *x509.Certificate, names []string, now time.Time) bool {
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil || !bytes.Equal(leaf.RawIssuer, ca.RawSubject) || leaf.CheckSignatureFrom(ca) != nil || now.Add(leafRenew).After(leaf.NotAfter) {
		return false
	}
	var have []string
	have = append(have, leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		have = append(have, ip.String())
	}
	want := slices.Clone(names)
	slices.Sort(have)
	slices.Sort(want)
	return slices.Equal(have, want)
}

func readPair(certPath, keyPath string) (*x509.Certificate, crypto.Signer, error) {
	cb, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, err
	}
	kb, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, err
	}
	cblock, _ := pem.Decode(cb)
	kblock, _ := pem.Decode(kb)
	if cblock == nil || kblock == nil {
		return nil, nil, errors.New("not PEM")
	}
	cert, err := x509.ParseCertificate(cblock.Bytes)
	if err != nil {
		return nil, nil, err
	}
	key, err := x509.ParsePKCS8PrivateKey(kblock.Bytes)
	if err != nil {
		return nil, nil, err
	}
	signer, ok := key.(crypto.Signer)
	if !ok || !publicEqual(signer.Public(), cert.PublicKey) {
		return nil, nil, errors.New("key does not match certificate")
	}
	return cert, signer, nil
}

func publicEqual(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}

// writePair writes a certificate file (mode 0644: it is public) and its
// key (0600), each through a temporary file and a rename.
func writePair(dir, certName, keyName string, certPEM []byte, priv crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, keyName), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, certName), certPEM, 0o644)
}

func writeFile(path string, b []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}
