// Wrangler (and the Workers Vitest pool) import `.wasm` files as precompiled modules: workerd
// forbids compiling WebAssembly from bytes at run time.
declare module '*.wasm' {
  const module: WebAssembly.Module
  // biome-ignore lint/style/noDefaultExport: the bundler hands a .wasm module over as the default export
  export default module
}
