;; hostile: a filter that traps on every batch
(func (export "filter") (param i32 i32 i32) (result i32)
  unreachable)
