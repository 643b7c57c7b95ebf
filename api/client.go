package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxAppNameLen is the longest app name: a DNS label, since the app is served
// at NAME.DOMAIN.
const MaxAppNameLen = 63

// ValidAppName reports whether name can name an app: 1 to 63 lower-case
// letters, digits and '-', starting with a letter and not ending with '-'.
// The error says exactly what is wrong.
func ValidAppName(name string) error {
	const rule = "use 1 to 63 lower-case letters, digits and '-', starting with a letter"
	if name == "" {
		return fmt.Errorf("app name is empty: %s", rule)
	}
	if len(name) > MaxAppNameLen {
		return fmt.Errorf("app name %q is %d bytes long; the limit is %d, since it becomes a DNS label (NAME.DOMAIN)",
			name, len(name), MaxAppNameLen)
	}
	for i := 0; i < len(name); {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z':
		case ('0' <= c && c <= '9') || c == '-':
			if i == 0 {
				return fmt.Errorf("app name %q must start with a lower-case letter, not %q", name, c)
			}
		case 'A' <= c && c <= 'Z':
			return fmt.Errorf("app name %q has upper-case %q at position %d: app names are lower-case (try %q)",
				name, c, i+1, strings.ToLower(name))
		default:
			r, _ := utf8.DecodeRuneInString(name[i:])
			return fmt.Errorf("app name %q has %q at position %d: %s", name, r, i+1, rule)
		}
		i++
	}
	if name[len(name)-1] == '-' {
		return fmt.Errorf("app name %q must not end with '-'", name)
	}
	return nil
}

// validDigest reports whether d is a SHA-256 in lower-case hex, the form the
// blob routes take.
func validDigest(d string) error {
	if len(d) != sha256.Size*2 {
		return fmt.Errorf("blob digest %q: want 64 lower-case hex characters (a SHA-256)", d)
	}
	for i := 0; i < len(d); i++ {
		if c := d[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return fmt.Errorf("blob digest %q: want 64 lower-case hex characters (a SHA-256)", d)
		}
	}
	return nil
}

// StatusError is a non-2xx answer of the control API. Callers inspect it with
// errors.As; Error returns the server's message.
type StatusError struct {
	// Status is the HTTP status code.
	Status int
	// Err is the server's JSON error body. When the answer had none (a proxy,
	// or not a Frost server at all), Code is "" and Message holds the status
	// and the start of the body.
	Err Error
}

// Error implements error.
func (e *StatusError) Error() string {
	if e.Err.Message != "" {
		return e.Err.Message
	}
	return fmt.Sprintf("%d %s", e.Status, http.StatusText(e.Status))
}

// UnreachableError says the control API could not be reached at all: nothing
// listens at URL, the host does not resolve, or the network is down.
type UnreachableError struct {
	// URL is the control API's base URL.
	URL string
	// Err is the dial error.
	Err error
}

// Error implements error.
func (e *UnreachableError) Error() string {
	return fmt.Sprintf("the frost server isn't reachable at %s (%v): start it with `frost server`, or set FROST_API to its address",
		e.URL, dialReason(e.Err))
}

// Unwrap returns the dial error.
func (e *UnreachableError) Unwrap() error { return e.Err }

// dialReason shortens a dial error to its cause ("connection refused").
func dialReason(err error) error {
	var sys *os.SyscallError
	if errors.As(err, &sys) {
		return sys.Err
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

// Client calls the control API. It is safe for concurrent use; every method
// blocks until the answer is read or ctx is done.
type Client struct {
	base     string
	token    string
	hc       *http.Client
	progress func(done, total int64)
}

// WithUploadProgress has the Client call fn as blob uploads advance (the
// bytes sent so far and the blob's size), and once more at the end.
func WithUploadProgress(fn func(done, total int64)) ClientOption {
	return func(c *Client) { c.progress = fn }
}

// ClientOption configures a Client.
type ClientOption func(*Client)

// WithHTTPClient makes the Client send its requests with hc instead of
// http.DefaultClient. A Timeout on hc also cuts Logs streams short.
func WithHTTPClient(hc *http.Client) ClientOption {
	return func(c *Client) { c.hc = hc }
}

// NewClient returns a client of the control API at baseURL (for example
// "http://127.0.0.1:7070"; a URL without a scheme gets "http://") that
// authenticates with token.
func NewClient(baseURL, token string, opts ...ClientOption) *Client {
	base := strings.TrimRight(strings.TrimSpace(baseURL), "/")
	if base != "" && !strings.Contains(base, "://") {
		base = "http://" + base
	}
	c := &Client{base: base, token: token, hc: http.DefaultClient}
	for _, o := range opts {
		o(c)
	}
	return c
}

// BaseURL returns the control API's base URL as the client uses it.
func (c *Client) BaseURL() string { return c.base }

// Health returns the server's health. It needs no token.
func (c *Client) Health(ctx context.Context) (Health, error) {
	var h Health
	err := c.do(ctx, http.MethodGet, "/v1/health", nil, "", -1, &h)
	return h, err
}

// Status returns the server's status: its role and, with shared storage,
// its upload backlog; from a gateway, every node's.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	err := c.do(ctx, http.MethodGet, "/v1/status", nil, "", -1, &s)
	return s, err
}

// HasBlob reports whether the server stores the blob with SHA-256 digest.
func (c *Client) HasBlob(ctx context.Context, digest string) (bool, error) {
	if err := validDigest(digest); err != nil {
		return false, err
	}
	err := c.do(ctx, http.MethodHead, "/v1/blobs/"+digest, nil, "", -1, nil)
	var se *StatusError
	if errors.As(err, &se) && se.Status == http.StatusNotFound {
		return false, nil
	}
	return err == nil, err
}

// PutBlob uploads size bytes from r as the blob with SHA-256 digest; size < 0
// means unknown. The server verifies the hash (422 on a mismatch).
func (c *Client) PutBlob(ctx context.Context, digest string, r io.Reader, size int64) (Blob, error) {
	var b Blob
	if err := validDigest(digest); err != nil {
		return b, err
	}
	if c.progress != nil && r != nil {
		r = &progressReader{r: r, total: size, fn: c.progress}
	}
	err := c.do(ctx, http.MethodPut, "/v1/blobs/"+digest, r, "application/octet-stream", size, &b)
	return b, err
}

// Deploy creates a release of app name from req (creating the app on its
// first deploy) and returns the app as it now is. req.Module (and
// req.Assets, if set) must already be uploaded; DeployFile does both for the
// module, UploadAssets for the assets.
func (c *Client) Deploy(ctx context.Context, name string, req DeployRequest) (AppDetail, error) {
	var d AppDetail
	if err := ValidAppName(name); err != nil {
		return d, err
	}
	if err := validDigest(req.Module); err != nil {
		return d, fmt.Errorf("deploy %s: module: %w", name, err)
	}
	if req.Assets != "" {
		if err := validDigest(req.Assets); err != nil {
			return d, fmt.Errorf("deploy %s: assets: %w", name, err)
		}
	}
	err := c.doJSON(ctx, http.MethodPost, appPath(name, "releases"), req, &d)
	return d, err
}

// DeployFile deploys the Wasm module in the file at path: it hashes the
// file, uploads it unless the server already has it, and calls Deploy with
// req.Module set to its digest. To deploy with assets, set req.Assets to the
// digest UploadAssets returns.
func (c *Client) DeployFile(ctx context.Context, name, path string, req DeployRequest) (AppDetail, error) {
	if err := ValidAppName(name); err != nil {
		return AppDetail{}, err
	}
	f, err := os.Open(path)
	if err != nil {
		return AppDetail{}, err
	}
	defer f.Close()
	h := sha256.New()
	size, err := io.Copy(h, f)
	if err != nil {
		return AppDetail{}, fmt.Errorf("read %s: %w", path, err)
	}
	digest := hex.EncodeToString(h.Sum(nil))
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return AppDetail{}, fmt.Errorf("read %s: %w", path, err)
	}
	if err := c.ensureBlob(ctx, digest, f, size); err != nil {
		return AppDetail{}, err
	}
	req.Module = digest
	return c.Deploy(ctx, name, req)
}

// Apps lists every app.
func (c *Client) Apps(ctx context.Context) ([]App, error) {
	var apps []App
	err := c.do(ctx, http.MethodGet, "/v1/apps", nil, "", -1, &apps)
	return apps, err
}

// Freeze freezes an app now (POST /v1/apps/{name}/freeze) and returns its
// details.
func (c *Client) Freeze(ctx context.Context, name string) (AppDetail, error) {
	var d AppDetail
	if err := ValidAppName(name); err != nil {
		return d, err
	}
	err := c.do(ctx, http.MethodPost, appPath(name, "/freeze"), nil, "", -1, &d)
	return d, err
}

// App returns app name with its limits, releases and counters.
func (c *Client) App(ctx context.Context, name string) (AppDetail, error) {
	var d AppDetail
	if err := ValidAppName(name); err != nil {
		return d, err
	}
	err := c.do(ctx, http.MethodGet, appPath(name, ""), nil, "", -1, &d)
	return d, err
}

// DeleteApp deletes app name and all its releases.
func (c *Client) DeleteApp(ctx context.Context, name string) error {
	if err := ValidAppName(name); err != nil {
		return err
	}
	return c.do(ctx, http.MethodDelete, appPath(name, ""), nil, "", -1, nil)
}

// CreateTenant creates a tenant (admin token only). The answer's Token is
// the tenant's token, shown this once.
func (c *Client) CreateTenant(ctx context.Context, name string) (Tenant, error) {
	var t Tenant
	err := c.doJSON(ctx, http.MethodPost, "/v1/tenants", TenantRequest{Name: name}, &t)
	return t, err
}

// Tenants lists the tenants (admin token only).
func (c *Client) Tenants(ctx context.Context) ([]Tenant, error) {
	var ts []Tenant
	err := c.do(ctx, http.MethodGet, "/v1/tenants", nil, "", -1, &ts)
	return ts, err
}

// DeleteTenant deletes a tenant that owns no app or sandbox (admin token
// only); its token stops working.
func (c *Client) DeleteTenant(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/tenants/"+url.PathEscape(name), nil, "", -1, nil)
}

// SetEnv changes app name's environment: req.Set is merged in, then the keys
// in req.Unset are removed. New instances see the change.
func (c *Client) SetEnv(ctx context.Context, name string, req EnvRequest) (App, error) {
	var a App
	if err := ValidAppName(name); err != nil {
		return a, err
	}
	err := c.doJSON(ctx, http.MethodPatch, appPath(name, "env"), req, &a)
	return a, err
}

// Logs calls fn for each of app name's log lines: the last tail lines first
// (tail < 0 leaves the count to the server), then, with follow, new lines as
// they come until ctx is done (Logs then returns ctx's error) or the server
// ends the stream (nil). An error from fn stops the stream and is returned.
func (c *Client) Logs(ctx context.Context, name string, tail int, follow bool, fn func(LogLine) error) error {
	if err := ValidAppName(name); err != nil {
		return err
	}
	q := url.Values{}
	if tail >= 0 {
		q.Set("tail", strconv.Itoa(tail))
	}
	if follow {
		q.Set("follow", "true")
	}
	p := appPath(name, "logs")
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	resp, err := c.send(ctx, http.MethodGet, p, nil, "", -1)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var l LogLine
		if err := dec.Decode(&l); err != nil {
			if err == io.EOF {
				return nil
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("read logs of %s: %w", name, err)
		}
		if err := fn(l); err != nil {
			return err
		}
	}
}

func appPath(name, sub string) string {
	p := "/v1/apps/" + url.PathEscape(name)
	if sub != "" {
		p += "/" + sub
	}
	return p
}

// doJSON sends in as a JSON body and decodes the answer into out.
func (c *Client) doJSON(ctx context.Context, method, path string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return c.do(ctx, method, path, bytes.NewReader(b), "application/json", int64(len(b)), out)
}

// do sends a request and decodes a 2xx JSON answer into out (if out is not nil).
func (c *Client) do(ctx context.Context, method, path string, body io.Reader, ctype string, size int64, out any) error {
	resp, err := c.send(ctx, method, path, body, ctype, size)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil || resp.StatusCode == http.StatusNoContent || method == http.MethodHead {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: bad answer from %s: %w", method, path, c.base, err)
	}
	return nil
}

// send sends a request and returns a 2xx response, whose body the caller
// closes; anything else becomes a *StatusError or *UnreachableError.
func (c *Client) send(ctx context.Context, method, path string, body io.Reader, ctype string, size int64) (*http.Response, error) {
	if c.base == "" {
		return nil, errors.New("no control API URL: set FROST_API (for example http://127.0.0.1:7070)")
	}
	if body != nil && size == 0 {
		body = http.NoBody
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, fmt.Errorf("control API URL %q: %w", c.base, err)
	}
	if body != nil && size >= 0 {
		req.ContentLength = size
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "frost-client/"+Version)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var op *net.OpError
		var dns *net.DNSError
		if (errors.As(err, &op) && op.Op == "dial") || errors.As(err, &dns) {
			return nil, &UnreachableError{URL: c.base, Err: err}
		}
		return nil, fmt.Errorf("%s %s%s: %w", method, c.base, path, err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, statusError(resp)
}

// statusError reads a non-2xx answer into a *StatusError.
func statusError(resp *http.Response) error {
	se := &StatusError{Status: resp.StatusCode}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(b, &se.Err) == nil && se.Err.Code != "" {
		return se
	}
	// Not a Frost error body: keep Code empty so callers can tell.
	msg := strings.TrimSpace(string(b))
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	if msg == "" || !utf8.ValidString(msg) {
		msg = http.StatusText(resp.StatusCode)
	}
	se.Err = Error{Message: fmt.Sprintf("HTTP %d: %s", resp.StatusCode, msg)}
	return se
}

// progressReader reports the bytes read through it.
type progressReader struct {
	r     io.Reader
	done  int64
	total int64
	fn    func(done, total int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.done += int64(n)
	p.fn(p.done, p.total)
	return n, err
}
