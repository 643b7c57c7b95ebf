// Package snapshot is Frost's runtime-agnostic snapshot format: a manifest
// and its parts, a local store that writes them atomically and verifies
// them before use, and a packed form for moving them between nodes.
//
// A snapshot is the frozen state of an initialised release: a set of named
// binary parts (wasm memory, globals and guest file system today; gVisor
// checkpoint images, microVM memory and disk later) and a Manifest naming
// the app and release it belongs to, the runtime and runtime state-format
// version that can restore it, and every part's SHA-256 and size.
//
// Parts come and go in one of two forms, with the same guarantees: in
// memory (Put, Get; wasm snapshots of KiBs to MiBs), or as files on the
// host (PutFiles, GetFiles; gVisor checkpoint images of hundreds of MiB,
// the directory `runsc checkpoint --image-path` writes and `runsc restore
// --image-path` reads). The file form streams every part through a 1 MiB
// buffer, so its memory does not grow with the parts. One store holds
// both: a snapshot put in one form can be read in the other.
//
// A snapshot and what it points at are a matched pair. Every part is
// content-addressed and verified before it is handed out; a snapshot that
// fails verification is reported with an error wrapping ErrCorrupt,
// ErrIncompatible or ErrWrongRelease and never served. The caller boots
// cold, counts the failure and calls Quarantine.
//
// # Layout
//
//	DIR/<release>/manifest.json            the manifest (JSON); its mtime is the last use
//	DIR/<release>/<sha256>                 a part, named by the SHA-256 of its bytes
//	DIR/<release>/.tmp-*                   a write in progress; removed by Open
//	DIR/quarantine/<release>-<unixnano>/   a snapshot set aside, with reason.txt
//
// Release IDs must be 64 lower-case hex characters and part files are named
// by digest, so no name from a caller or a manifest can reach outside DIR.
// Part names match [a-z0-9][a-z0-9._-]{0,63} (runsc's checkpoint.img,
// pages.img and pages_meta.img do). GetFiles uses them as file names in
// the caller's directory; with no slash and no leading dot, a name is one
// path element and never "." or "..", so it cannot reach outside there
// either.
// Naming parts by digest also makes re-putting an unchanged part cheap: a
// file already there under that digest, with the right size, is kept.
// Part files are sparse: a 4 KiB block of zeros is a hole, so a mostly
// empty memory costs what its data costs on disk. Sizes (Options.MaxBytes,
// TotalBytes, Info.Size) are bytes on disk, not Manifest.Size.
//
// # Writing
//
// Put writes each part to a temporary file in the snapshot's directory
// (skipping zero blocks), fsyncs it and renames it to its digest; once all
// are renamed it fsyncs the directory. Then it writes the manifest the
// same way: temporary file, fsync, rename over manifest.json, fsync
// directory. That rename is the commit point. Before it, the directory
// holds the previous snapshot (or none) plus files nothing lists; after
// it, the new one, and Put removes the parts only the previous one
// listed. A crash therefore never leaves a manifest listing a part that
// was not durably written. Delete removes the manifest first, then the
// rest.
//
// PutFiles goes through the same steps, from files: it copies each
// through a 1 MiB buffer into the temporary file, hashing as it copies and
// skipping zero blocks whether or not the source has holes, and learns the
// digest only at the end of the file. It then fsyncs and renames the copy,
// or drops it if that part is already stored. It never changes the files
// it reads, and refuses one whose size changes while it is read (a
// checkpoint still being written).
//
// Open finishes what a crash interrupted: it removes temporary files,
// directories without a manifest (a Put that never committed) and files a
// parseable manifest does not list. It keeps a directory whose manifest
// does not parse, so that Get reports it (ErrCorrupt) and the caller counts
// and quarantines it, rather than it vanishing unnoticed.
//
// # Verification
//
// Get returns a snapshot only when all of these hold, checked in this
// order:
//
//   - manifest.json exists (else ErrNotFound);
//   - it is at most 1 MiB of JSON with a "format" field (else ErrCorrupt);
//   - the format is FormatVersion (else ErrIncompatible);
//   - it has only known fields, a valid release ID, a non-empty app,
//     runtime and runtime version, and parts sorted by name with valid
//     names, 64-hex digests and non-negative sizes (else ErrCorrupt);
//   - its runtime and runtime version are those wanted (else
//     ErrIncompatible), and its app and release too (else ErrWrongRelease);
//   - every listed part file exists, has exactly the listed size, and its
//     bytes have exactly the listed SHA-256 (else ErrCorrupt).
//
// Size is checked before a part is read, so a manifest cannot make Get
// allocate more than the part files hold.
//
// GetFiles makes the same checks in the same order with the same errors,
// and writes each part into the caller's directory under its name,
// sparsely, as it reads it. The SHA-256 it checks is of the bytes it
// wrote, not of an earlier read, so a part file that changes after its
// size is checked cannot slip through. On any error it removes the files
// it created: the directory holds a whole verified snapshot or nothing of
// it.
//
// # Packed form
//
// Pack and Unpack (and Store.Export and Store.Import) move a snapshot as
// one stream:
//
//	"FROSTSNP"                    magic
//	uint32, big-endian            pack version, 1
//	zstd stream of:
//	  uvarint, bytes              the manifest JSON
//	  per part, in manifest order:
//	    uvarint                   extent count
//	    per extent:
//	      uvarint, uvarint        offset, length
//	      length bytes            the part's bytes at that offset
//
// A part's extents are its runs of 4 KiB blocks that are not all zero, in
// increasing order without overlap; every byte outside them is zero. Each
// extent starts on a 4 KiB boundary and is whole blocks long, except that
// one may end at the part's end. So a mostly empty 1 GiB memory packs to
// about its data's compressed size. Unpack checks all of that, the
// manifest as Get does, every part's size and SHA-256, that nothing follows
// the last part, and that the parts add up to no more than the caller's
// limit before it allocates them.
package snapshot
