;; a filter that reports its own error: keeps every record up to one whose value is "boom", then
;; returns what it kept with SmartModuleTransformRuntimeError{hint "boom found", offset 0, kind
;; Filter, key None, value ""} (the partial result and its error)
(data (i32.const 16) "boom")
(data (i32.const 32) "\01\00\0aboom found\00\00\00\00\00\00\00\00\00\00\00")
(func (export "filter") (param $ptr i32) (param $len i32) (param $ver i32) (result i32)
  (local $i i32)
  (call $begin (local.get $ptr) (local.get $len))
  (call $out_begin (global.get $heap))
  (block $done (loop $l
    (br_if $done (i32.ge_u (local.get $i) (global.get $count)))
    (call $next_record)
    (if (i32.and (i32.eq (global.get $r_vl) (i32.const 4))
                 (call $contains (global.get $r_vp) (global.get $r_vl) (i32.const 16) (i32.const 4)))
      (then
        ;; count patched, then Some(error) instead of None
        (call $out_finish)
        (global.set $w (i32.sub (global.get $w) (i32.const 1)))
        (call $wcopy (i32.const 32) (i32.const 24))
        (return (call $out_send))))
    (call $out_copy)
    (local.set $i (i32.add (local.get $i) (i32.const 1)))
    (br $l)))
  (call $out_finish)
  (call $out_send))
