package gateway

import (
	"hash/fnv"
	"strconv"
	"strings"

	"github.com/frostdev/frost/api"
)

// A Route is what a request's hostname says about where it goes. The
// forms (docs/ROUTING.md), each one DNS label under the domain so that one
// wildcard certificate covers them all:
//
//	NAME.DOMAIN            app NAME: the bounded-load ring picks the node
//	0-NODE--NAME.DOMAIN    app NAME on node NODE (pinned)
//	PORT-ID.DOMAIN         port PORT of sandbox ID, on the node its ID names
//
// An app name starts with a letter, so a label starting with a digit is
// never one; a node name has no "--", so the first "--" ends it.
type Route struct {
	Kind Kind
	App  string // KindApp, KindPinned
	Node string // KindPinned
	// Sandbox and Port for KindSandbox; NodeTag is the node tag its ID
	// starts with (SandboxTag).
	Sandbox string
	Port    int
	NodeTag string
}

// Kind is a route's form.
type Kind int

// Route kinds.
const (
	KindNone Kind = iota // not one of Frost's hostnames
	KindApp
	KindPinned
	KindSandbox
)

// SandboxIDLen is the length of a sandbox ID; its first TagLen characters
// are the tag of the node that made it.
const (
	SandboxIDLen = 20
	TagLen       = 4
)

// Parse reads host (a Host header or TLS server name, with or without a
// port) under domain. It reads no registry: everything is in the name.
func Parse(host, domain string) Route {
	if h, _, ok := strings.Cut(host, ":"); ok && !strings.Contains(h, "]") {
		host = h
	}
	for i := 0; i < len(host); i++ {
		if host[i] >= 0x80 {
			return Route{} // Unicode case folding would alias names
		}
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	label, ok := strings.CutSuffix(host, "."+strings.ToLower(strings.TrimSuffix(domain, ".")))
	if !ok || label == "" || strings.Contains(label, ".") {
		return Route{}
	}
	if rest, ok := strings.CutPrefix(label, "0-"); ok {
		node, name, ok := strings.Cut(rest, "--")
		if !ok || ValidNodeName(node) != nil || api.ValidAppName(name) != nil {
			return Route{}
		}
		return Route{Kind: KindPinned, App: name, Node: node}
	}
	if c := label[0]; '1' <= c && c <= '9' {
		ps, id, ok := strings.Cut(label, "-")
		port, err := strconv.Atoi(ps)
		if !ok || err != nil || port < 1 || port > 65535 || strconv.Itoa(port) != ps || !validSandboxID(id) {
			return Route{}
		}
		return Route{Kind: KindSandbox, Sandbox: id, Port: port, NodeTag: id[:TagLen]}
	}
	if api.ValidAppName(label) != nil {
		return Route{}
	}
	return Route{Kind: KindApp, App: label}
}

// hostUnder is the hostname of rt under domain ("" for a route that has
// none: a sandbox named by E2B's header, not its hostname).
func (rt Route) hostUnder(domain string) string {
	switch {
	case rt.Kind == KindApp, rt.Kind == KindPinned:
		return rt.App + "." + domain
	case rt.Kind == KindSandbox && rt.Port > 0:
		return strconv.Itoa(rt.Port) + "-" + rt.Sandbox + "." + domain
	}
	return ""
}

func validSandboxID(id string) bool {
	if len(id) != SandboxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// ValidNodeName checks a node name: 1 to 32 lower-case letters, digits and
// single hyphens, starting with a letter (so it never contains "--").
func ValidNodeName(name string) error {
	if name == "" || len(name) > 32 {
		return errNodeName(name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z':
		case '0' <= c && c <= '9', c == '-':
			if i == 0 || c == '-' && (name[i-1] == '-' || i == len(name)-1) {
				return errNodeName(name)
			}
		default:
			return errNodeName(name)
		}
	}
	return nil
}

type errNodeName string

func (e errNodeName) Error() string {
	return "node name " + strconv.Quote(string(e)) + ": use 1 to 32 lower-case letters, digits and single hyphens, starting with a letter and not ending with a hyphen"
}

// SandboxTag is the TagLen-character tag a node puts at the start of the
// IDs of the sandboxes it makes, so that PORT-ID.DOMAIN names the node:
// base 36 of a hash of the node's name.
func SandboxTag(node string) string {
	h := fnv.New64a()
	h.Write([]byte(node))
	s := strconv.FormatUint(h.Sum64()%(36*36*36*36), 36)
	return strings.Repeat("0", TagLen-len(s)) + s
}
