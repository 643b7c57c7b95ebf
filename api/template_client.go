package api

import (
	"context"
	"net/http"
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
