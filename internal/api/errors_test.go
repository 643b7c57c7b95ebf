package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	wire "github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/registry"
)

// TestRegistryUnavailable: a registry that cannot be reached (a cluster's
// etcd down) is 503 "unavailable" with Retry-After, not a 500 that says
// the server failed.
func TestRegistryUnavailable(t *testing.T) {
	w := httptest.NewRecorder()
	err := fmt.Errorf("deploy %q: %w: etcd at http://127.0.0.1:2379 did not answer within 5s", "web", registry.ErrUnavailable)
	writeError(w, err)
	var body wire.Error
	if e := json.Unmarshal(w.Body.Bytes(), &body); e != nil {
		t.Fatal(e)
	}
	if w.Code != http.StatusServiceUnavailable || body.Code != wire.CodeUnavailable || w.Header().Get("Retry-After") == "" || body.Message != err.Error() {
		t.Fatalf("%d %+v Retry-After=%q, want 503 %q with the error's message and Retry-After", w.Code, body, w.Header().Get("Retry-After"), wire.CodeUnavailable)
	}
	// Any other failure keeps its status and has no Retry-After.
	w = httptest.NewRecorder()
	writeError(w, errors.New("disk on fire"))
	if w.Code != http.StatusInternalServerError || w.Header().Get("Retry-After") != "" {
		t.Fatalf("an internal error: %d Retry-After=%q", w.Code, w.Header().Get("Retry-After"))
	}
}
