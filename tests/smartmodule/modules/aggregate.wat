;; aggregate: the accumulator is the concatenation of every value so far; each record comes out
;; as the accumulator after it. Needs StreamFetch version >= 23 (-11 otherwise).
(func (export "aggregate") (param $ptr i32) (param $len i32) (param $ver i32) (result i32)
  (local $i i32) (local $accp i32) (local $accl i32) (local $scratch i32)
  (if (i32.lt_s (local.get $ver) (i32.const 23)) (then (return (i32.const -11))))
  (call $begin (local.get $ptr) (local.get $len))
  ;; input accumulator: after the raw bytes and the i64 base_timestamp
  (local.set $accp (i32.add (global.get $raw_end) (i32.const 8)))
  (local.set $accl (call $be32 (local.get $accp)))
  ;; the running accumulator lives at $scratch, room for it plus every value
  (local.set $scratch (global.get $heap))
  (call $ensure (i32.add (i32.add (local.get $scratch) (local.get $accl)) (local.get $len)))
  (memory.copy (local.get $scratch) (i32.add (local.get $accp) (i32.const 4)) (local.get $accl))
  (call $out_begin (i32.add (i32.add (local.get $scratch) (local.get $accl)) (local.get $len)))
  (block $done (loop $l
    (br_if $done (i32.ge_u (local.get $i) (global.get $count)))
    (call $next_record)
    (memory.copy (i32.add (local.get $scratch) (local.get $accl)) (global.get $r_vp) (global.get $r_vl))
    (local.set $accl (i32.add (local.get $accl) (global.get $r_vl)))
    (call $out_head (global.get $r_tsd) (global.get $r_od) (global.get $r_kp) (global.get $r_kl) (local.get $accl))
    (call $wcopy (local.get $scratch) (local.get $accl))
    (call $out_tail)
    (local.set $i (i32.add (local.get $i) (i32.const 1)))
    (br $l)))
  (call $out_finish)
  (call $w32 (local.get $accl))
  (call $wcopy (local.get $scratch) (local.get $accl))
  (call $out_send))
