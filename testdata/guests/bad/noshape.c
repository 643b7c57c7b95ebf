// noshape.c builds a valid wasm module that is neither an http-wasm handler
// (no handle_request) nor a WASI command (no _start): Frost must reject it
// with a clear error.
__attribute__((export_name("add"))) int add(int a, int b) { return a + b; }
