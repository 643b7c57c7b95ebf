package api

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// BuildTemplate builds a sandbox template (POST /v1/templates): a sandbox
// boots req.FromRootFS, runs req.Run in order, and is checkpointed;
// sandboxes created from the template restore that checkpoint.
func (c *Client) BuildTemplate(ctx context.Context, req TemplateBuildRequest) (Template, error) {
	var t Template
	return t, c.doJSON(ctx, http.MethodPost, "/v1/templates", req, &t)
}

// Templates lists the sandbox templates.
func (c *Client) Templates(ctx context.Context) ([]Template, error) {
	var list []Template
	return list, c.do(ctx, http.MethodGet, "/v1/templates", nil, "", 0, &list)
}

// DeleteTemplate removes a template and its checkpoint (not the base one);
// sandboxes made from it go on. ref is NAME, or TENANT/NAME for a
// tenant's template asked for by the admin (ValidTemplateRef).
func (c *Client) DeleteTemplate(ctx context.Context, ref string) error {
	if !ValidTemplateRef(ref) {
		return fmt.Errorf("template %q: a name is 1-63 lower-case letters, digits and '-' (TENANT/NAME for a tenant's)", ref)
	}
	return c.do(ctx, http.MethodDelete, "/v1/templates/"+ref, nil, "", 0, nil)
}

// SnapshotSandbox makes template name of sandbox id as it is now: its
// files, memory and running processes (a running sandbox pauses for the
// checkpoint and runs on). Sandboxes created from it start there.
func (c *Client) SnapshotSandbox(ctx context.Context, id, name string) (Template, error) {
	p, err := sandboxPath(id, "snapshot")
	if err != nil {
		return Template{}, err
	}
	var t Template
	return t, c.doJSON(ctx, http.MethodPost, p, SnapshotRequest{Name: name}, &t)
}

// ForkSandbox starts count new sandboxes where sandbox id is now, with its
// settings; timeout (0: its own) is theirs.
func (c *Client) ForkSandbox(ctx context.Context, id string, count int, timeout time.Duration) ([]Sandbox, error) {
	p, err := sandboxPath(id, "fork")
	if err != nil {
		return nil, err
	}
	var forks []Sandbox
	return forks, c.doJSON(ctx, http.MethodPost, p, ForkRequest{Count: count, Timeout: Duration(timeout)}, &forks)
}

// ValidTemplateName says whether s can name a template: 1-63 lower-case
// letters, digits and '-', not first.
func ValidTemplateName(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' {
		return false
	}
	for _, c := range s {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// ValidTemplateRef says whether s can refer to a template: its NAME (a
// tenant's own, else the admin's), or TENANT/NAME. Names are per tenant:
// two tenants may each have a template of the same name.
func ValidTemplateRef(s string) bool {
	owner, name, qualified := strings.Cut(s, "/")
	if !qualified {
		return ValidTemplateName(s)
	}
	return ValidTemplateName(owner) && ValidTemplateName(name)
}

// TemplateRef is how t is referred to by anyone who sees it: TENANT/NAME
// for a tenant's, NAME for the admin's.
func TemplateRef(t Template) string {
	if t.Tenant == "" {
		return t.Name
	}
	return t.Tenant + "/" + t.Name
}
