;; hostile: a filter that never returns
(func (export "filter") (param i32 i32 i32) (result i32)
  (loop $forever (br $forever))
  (i32.const 0))
