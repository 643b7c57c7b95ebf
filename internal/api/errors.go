package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	wire "github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/blob"
	"github.com/frostdev/frost/internal/front"
	"github.com/frostdev/frost/internal/node"
	"github.com/frostdev/frost/internal/registry"
	"github.com/frostdev/frost/internal/runtime"
	"github.com/frostdev/frost/internal/sandbox"
)

var (
	errUnauthorized = errors.New("missing or wrong token: send Authorization: Bearer TOKEN with the token in DATA/admin.token")
	errBadRequest   = errors.New("bad request")
	errNoRoute      = errors.New("not found")
)

func notFoundApp(name string, err error) error {
	if errors.Is(err, registry.ErrNotFound) {
		return fmt.Errorf("%w: no app named %q; list apps with GET /v1/apps", registry.ErrNotFound, name)
	}
	return err
}

// writeError writes err as an error answer.
func writeError(w http.ResponseWriter, err error) {
	status, body := classify(err)
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="frost"`)
	}
	if body.Code == wire.CodeUnavailable {
		w.Header().Set("Retry-After", "5")
	}
	if to := sandbox.Holder(err); to != "" {
		// In a cluster, another node holds the sandbox: a gateway
		// re-sends the call there.
		w.Header().Set(wire.ReplayHeader, to)
	}
	writeJSON(w, status, body)
}

// errorBody is err as an api.Error, for errors reported inside a stream.
func errorBody(err error) wire.Error {
	_, body := classify(err)
	return body
}

// classify is the one place that maps errors to statuses and codes.
func classify(err error) (int, wire.Error) {
	status, code := http.StatusInternalServerError, wire.CodeInternal
	if st, c, ok := sandboxErrorStatus(err); ok {
		status, code = st, c
	}
	switch {
	case errors.Is(err, front.ErrBodyTimeout): // whatever it cut short
		status, code = http.StatusRequestTimeout, wire.CodeBodyTimeout
	case status != http.StatusInternalServerError:
	case errors.Is(err, errUnauthorized):
		status, code = http.StatusUnauthorized, wire.CodeUnauthorized
	case errors.Is(err, errForbidden):
		status, code = http.StatusForbidden, wire.CodeForbidden
	case errors.Is(err, errConflict), errors.Is(err, node.ErrNameTaken), errors.Is(err, registry.ErrExists):
		status, code = http.StatusConflict, wire.CodeConflict
	case errors.Is(err, registry.ErrNotFound), errors.Is(err, blob.ErrNotFound), errors.Is(err, errNoRoute):
		status, code = http.StatusNotFound, wire.CodeNotFound
	case errors.Is(err, blob.ErrTooLarge):
		status, code = http.StatusRequestEntityTooLarge, wire.CodeTooLarge
	case errors.Is(err, blob.ErrDigestMismatch):
		status, code = http.StatusUnprocessableEntity, wire.CodeInvalidRequest
	case errors.Is(err, blob.ErrInvalidDigest), errors.Is(err, errBadRequest), errors.Is(err, node.ErrInvalid):
		status, code = http.StatusBadRequest, wire.CodeInvalidRequest
	case errors.Is(err, runtime.ErrInvalidCode), errors.Is(err, runtime.ErrUnsupportedShape),
		errors.Is(err, runtime.ErrInit), errors.Is(err, runtime.ErrMemoryLimit):
		status, code = http.StatusUnprocessableEntity, wire.CodeInvalidModule
	case errors.Is(err, registry.ErrUnavailable):
		status, code = http.StatusServiceUnavailable, wire.CodeUnavailable
	case errors.Is(err, context.Canceled):
		status, code = 499, "canceled"
	}
	msg := err.Error()
	if status == http.StatusInternalServerError {
		msg = "internal error: " + msg
	}
	return status, wire.Error{Code: code, Message: msg}
}
