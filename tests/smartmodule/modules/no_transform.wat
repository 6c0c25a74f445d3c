;; hostile: memory and alloc, but none of filter/map/filter_map/array_map/aggregate
(func (export "transform") (param i32 i32 i32) (result i32) (i32.const 0))
