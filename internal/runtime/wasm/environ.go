package wasm

import (
	"context"
	"encoding/binary"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// WASI errno values the environment functions return.
const (
	errnoSuccess = 0
	errnoFault   = 21
)

// instantiateWASI instantiates WASI preview 1: wazero's functions, except
// environ_sizes_get and environ_get, which are Frost's. They answer with the
// calling instance's environment, exactly as wazero would, and note that the
// guest read it. That is how the runtime knows whether a guest's init
// depends on its environment: init runs with an empty one, so that the
// post-init snapshot holds no secrets, and only a guest that read its
// environment during init needs init again to see the real one (see
// program.template).
func instantiateWASI(ctx context.Context, rt wazero.Runtime) error {
	b := rt.NewHostModuleBuilder(wasi_snapshot_preview1.ModuleName)
	wasi_snapshot_preview1.NewFunctionExporter().ExportFunctions(b)
	i32s := []api.ValueType{api.ValueTypeI32, api.ValueTypeI32}
	b.NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(environSizesGet), i32s, []api.ValueType{api.ValueTypeI32}).
		WithParameterNames("result.environc", "result.environv_len").
		Export("environ_sizes_get")
	b.NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(environGet), i32s, []api.ValueType{api.ValueTypeI32}).
		WithParameterNames("environ", "environ_buf").
		Export("environ_get")
	_, err := b.Instantiate(ctx)
	return err
}

// environOf returns the calling instance's environment as KEY=VALUE entries,
// and marks it read.
func environOf(ctx context.Context) []string {
	in, _ := ctx.Value(instanceKey{}).(*instance)
	if in == nil || in.env == nil {
		return nil
	}
	in.envRead = true
	return in.env.entries
}

// environSizesGet is WASI environ_sizes_get: the number of entries and the
// bytes they need, NUL terminators included.
func environSizesGet(ctx context.Context, mod api.Module, stack []uint64) {
	env := environOf(ctx)
	size := 0
	for _, e := range env {
		size += len(e) + 1
	}
	mem := mod.Memory()
	if mem == nil || !mem.WriteUint32Le(uint32(stack[0]), uint32(len(env))) || !mem.WriteUint32Le(uint32(stack[1]), uint32(size)) {
		stack[0] = errnoFault
		return
	}
	stack[0] = errnoSuccess
}

// environGet is WASI environ_get: a pointer per entry at environ, the
// NUL-terminated entries at environ_buf.
func environGet(ctx context.Context, mod api.Module, stack []uint64) {
	env := environOf(ctx)
	ptrs, buf := uint32(stack[0]), uint32(stack[1])
	size := 0
	for _, e := range env {
		size += len(e) + 1
	}
	mem := mod.Memory()
	if mem == nil {
		stack[0] = errnoFault
		return
	}
	ptrMem, ok1 := mem.Read(ptrs, uint32(4*len(env)))
	bufMem, ok2 := mem.Read(buf, uint32(size))
	if !ok1 || !ok2 {
		stack[0] = errnoFault
		return
	}
	off := 0
	for i, e := range env {
		binary.LittleEndian.PutUint32(ptrMem[4*i:], buf+uint32(off))
		off += copy(bufMem[off:], e)
		bufMem[off] = 0
		off++
	}
	stack[0] = errnoSuccess
}
