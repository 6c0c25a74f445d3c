"""SmartModules: WASM filter/map/filter_map/array_map/aggregate run by the SPU (docs/smartmodules.md).

``abi`` is pure (the bytes that cross into and out of a module), ``engine`` runs modules with
wasmtime (bounded memory and fuel), ``chain`` applies a chain to stored batches.
"""
