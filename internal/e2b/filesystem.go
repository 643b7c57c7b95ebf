package e2b

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/frostdev/frost/api"
	pb "github.com/frostdev/frost/internal/e2b/envdpb/filesystempb"
	"github.com/frostdev/frost/internal/e2b/envdpb/filesystempb/filesystempbconnect"
)

// filesystemService is envd's filesystem.Filesystem over the sandbox
// service's file operations (which run Frost's agent in the sandbox).
type filesystemService struct {
	filesystempbconnect.UnimplementedFilesystemHandler
	e *Envd
}

func entry(fi api.FileInfo) *pb.EntryInfo {
	t := pb.FileType_FILE_TYPE_FILE
	switch fi.Type {
	case "dir":
		t = pb.FileType_FILE_TYPE_DIRECTORY
	case "symlink":
		t = pb.FileType_FILE_TYPE_SYMLINK
	}
	mode, _ := strconv.ParseUint(fi.Mode, 8, 32)
	e := &pb.EntryInfo{
		Name: fi.Name, Type: t, Path: fi.Path, Size: fi.Size, Mode: uint32(mode),
		Permissions: perms(uint32(mode), fi.Type == "dir"), Owner: "root", Group: "root",
		ModifiedTime: timestamppb.New(fi.ModTime),
	}
	if fi.Target != "" {
		e.SymlinkTarget = &fi.Target
	}
	return e
}

// perms renders mode the way ls does: drwxr-xr-x.
func perms(m uint32, dir bool) string {
	b := []byte("----------")
	if dir {
		b[0] = 'd'
	}
	for i, c := range "rwxrwxrwx" {
		if m&(1<<(8-i)) != 0 {
			b[i+1] = byte(c)
		}
	}
	return string(b)
}

// needPath refuses a request without a path.
func needPath(p string) (string, error) {
	if p == "" {
		return "", connect.NewError(connect.CodeInvalidArgument, errors.New("the request needs a path"))
	}
	return absPath(p), nil
}

func (s *filesystemService) Stat(ctx context.Context, req *connect.Request[pb.StatRequest]) (*connect.Response[pb.StatResponse], error) {
	p, err := needPath(req.Msg.Path)
	if err != nil {
		return nil, err
	}
	fi, err := s.e.m.Stat(ctx, sandboxID(ctx), p)
	if err != nil {
		return nil, connectError(err)
	}
	return connect.NewResponse(&pb.StatResponse{Entry: entry(fi)}), nil
}

// ListDir lists a directory; depth (default 1) descends into
// subdirectories, as envd does.
func (s *filesystemService) ListDir(ctx context.Context, req *connect.Request[pb.ListDirRequest]) (*connect.Response[pb.ListDirResponse], error) {
	p, err := needPath(req.Msg.Path)
	if err != nil {
		return nil, err
	}
	depth := max(int(req.Msg.Depth), 1)
	id := sandboxID(ctx)
	var out []*pb.EntryInfo
	var walk func(dir string, level int) error
	walk = func(dir string, level int) error {
		list, err := s.e.m.ListDir(ctx, id, dir)
		if err != nil {
			return err
		}
		for _, fi := range list {
			out = append(out, entry(fi))
			if fi.Type == "dir" && level < depth {
				if err := walk(fi.Path, level+1); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(p, 1); err != nil {
		return nil, connectError(err)
	}
	return connect.NewResponse(&pb.ListDirResponse{Entries: out}), nil
}

// MakeDir creates a directory and its parents; AlreadyExists when the
// path is there (the SDK answers false).
func (s *filesystemService) MakeDir(ctx context.Context, req *connect.Request[pb.MakeDirRequest]) (*connect.Response[pb.MakeDirResponse], error) {
	p, err := needPath(req.Msg.Path)
	if err != nil {
		return nil, err
	}
	id := sandboxID(ctx)
	if _, err := s.e.m.Stat(ctx, id, p); err == nil {
		return nil, connect.NewError(connect.CodeAlreadyExists, fmt.Errorf("%s already exists", p))
	}
	fi, err := s.e.m.Mkdir(ctx, id, p)
	if err != nil {
		return nil, connectError(err)
	}
	return connect.NewResponse(&pb.MakeDirResponse{Entry: entry(fi)}), nil
}

func (s *filesystemService) Remove(ctx context.Context, req *connect.Request[pb.RemoveRequest]) (*connect.Response[pb.RemoveResponse], error) {
	p, err := needPath(req.Msg.Path)
	if err != nil {
		return nil, err
	}
	if err := s.e.m.Remove(ctx, sandboxID(ctx), p); err != nil {
		return nil, connectError(err)
	}
	return connect.NewResponse(&pb.RemoveResponse{}), nil
}

func (s *filesystemService) Move(ctx context.Context, req *connect.Request[pb.MoveRequest]) (*connect.Response[pb.MoveResponse], error) {
	src, err := needPath(req.Msg.Source)
	if err != nil {
		return nil, err
	}
	dst, err := needPath(req.Msg.Destination)
	if err != nil {
		return nil, err
	}
	fi, err := s.e.m.Move(ctx, sandboxID(ctx), src, dst)
	if err != nil {
		return nil, connectError(err)
	}
	return connect.NewResponse(&pb.MoveResponse{Entry: entry(fi)}), nil
}

// WatchDir streams a start event once the watch is in place, then one
// event per change under the directory (its name relative to the
// directory; only direct children unless recursive), with keepalives
// while quiet.
func (s *filesystemService) WatchDir(ctx context.Context, req *connect.Request[pb.WatchDirRequest], stream *connect.ServerStream[pb.WatchDirResponse]) error {
	dir, err := needPath(req.Msg.Path)
	if err != nil {
		return err
	}
	id := sandboxID(ctx)
	if fi, err := s.e.m.Stat(ctx, id, dir); err != nil {
		return connectError(err)
	} else if fi.Type != "dir" {
		return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("%s is not a directory", dir))
	}
	out := newSender(stream.Send)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go out.keepalive(ctx, keepaliveEvery(req.Header(), 30*time.Second), &pb.WatchDirResponse{Event: &pb.WatchDirResponse_Keepalive{Keepalive: &pb.WatchDirResponse_KeepAlive{}}})
	types := map[string]pb.EventType{"create": pb.EventType_EVENT_TYPE_CREATE, "write": pb.EventType_EVENT_TYPE_WRITE, "remove": pb.EventType_EVENT_TYPE_REMOVE}
	err = s.e.m.Watch(ctx, id, dir, func(ev api.FileEvent) error {
		if ev.Op == api.FileEventReady {
			return out.sendMsg(&pb.WatchDirResponse{Event: &pb.WatchDirResponse_Start{Start: &pb.WatchDirResponse_StartEvent{}}})
		}
		name := strings.TrimPrefix(strings.TrimPrefix(ev.Path, dir), "/")
		if !req.Msg.Recursive && strings.Contains(name, "/") || strings.HasPrefix(path.Base(name), ".frost-upload-") {
			return nil
		}
		return out.sendMsg(&pb.WatchDirResponse{Event: &pb.WatchDirResponse_Filesystem{Filesystem: &pb.FilesystemEvent{Name: name, Type: types[ev.Op]}}})
	})
	if err != nil && ctx.Err() == nil {
		return connectError(err)
	}
	return nil
}
