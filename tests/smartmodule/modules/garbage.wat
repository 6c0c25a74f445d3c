;; hostile: a filter that hands back bytes that are not a SmartModuleOutput
(data (i32.const 16) "\ff\ff\ff\ff\de\ad\be\ef")
(func (export "filter") (param i32 i32 i32) (result i32)
  (call $copy_records (i32.const 16) (i32.const 8))
  (i32.const 0))
