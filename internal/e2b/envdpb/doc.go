// Package envdpb is the root of the generated Go code for envd, the agent API
// that E2B's SDKs call inside a sandbox, which Frost serves itself. The code
// below it is generated from proto/envd/ by `make proto` (scripts/proto.sh)
// and must not be edited by hand:
//
//   - processpb: the process service's messages (package process on the
//     wire): start, list, signal and feed input to processes, with output
//     streamed back as events.
//   - processpb/processpbconnect: its connect-go client and handler
//     (processpbconnect.ProcessHandler, NewProcessHandler).
//   - filesystempb: the file system service's messages (package filesystem):
//     stat, list, make, move, remove and watch paths.
//   - filesystempb/filesystempbconnect: its connect-go client and handler
//     (filesystempbconnect.FilesystemHandler, NewFilesystemHandler).
//
// The .proto files reproduce the E2B SDK's schema exactly on the wire (names,
// field numbers, oneofs, optional markers), so the unmodified SDKs can talk
// to Frost's implementation.
package envdpb
