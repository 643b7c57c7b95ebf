// Package e2e tests the real frost binary over real HTTP: it builds
// cmd/frost once, starts `frost server` processes on loopback ports with
// their own data directories, drives them with the CLI and plain HTTP
// clients, and kills and restarts them.
package e2e
