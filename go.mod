module github.com/frostdev/frost

go 1.26.8

require (
	github.com/prometheus/client_golang v1.25.0 // indirect
	github.com/tetratelabs/wazero v1.12.0 // indirect
	go.etcd.io/bbolt v1.4.3 // indirect
	golang.org/x/sys v0.48.0 // indirect
)
