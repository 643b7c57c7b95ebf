package bolt

import "encoding/binary"

// Key layout. Apps are keyed by name in the apps bucket. A release is keyed
// in the releases bucket by
//
//	appPrefix(app) | version (8 bytes, big-endian, sign bit flipped) | id
//
// so one app's releases are a contiguous range ordered by version, and in the
// release IDs bucket by appPrefix(app) | id, whose value is the release key.
// appPrefix starts with the name's length, so no app's prefix is a prefix of
// another app's keys ("web" and "web-2" never mix).

// appPrefix returns uvarint(len(app)) | app.
func appPrefix(app string) []byte {
	b := binary.AppendUvarint(make([]byte, 0, binary.MaxVarintLen64+len(app)), uint64(len(app)))
	return append(b, app...)
}

// releaseKey returns the releases bucket key of a release.
func releaseKey(app string, version int, id string) []byte {
	b := appPrefix(app)
	b = binary.BigEndian.AppendUint64(b, uint64(version)^(1<<63))
	return append(b, id...)
}

// idKey returns the release IDs bucket key of a release.
func idKey(app, id string) []byte {
	return append(appPrefix(app), id...)
}
