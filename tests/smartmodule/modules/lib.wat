;; The shared part of the test SmartModules: fluvial's tests splice it into each module
;; (tests/smartmodule/modules/__init__.py). It implements Fluvio's SmartModule ABI by hand:
;;   exports memory, alloc(len) -> ptr, dealloc(ptr, len); imports env.copy_records(ptr, len).
;; Memory: 0..1023 static data, 1024.. the heap. alloc always answers 1024 (the host allocates
;; once per call, the input), so nothing grows from batch to batch; output goes after the input.
;; Input (StreamFetch version >= 23): i64 base_offset, i32 raw length, i32 count, records,
;; i64 base_timestamp [, i32 accumulator length, accumulator]. Integers are big-endian.
(import "env" "copy_records" (func $copy_records (param i32 i32)))
(memory (export "memory") 1)
(global $heap (mut i32) (i32.const 1024))
(global $pos (mut i32) (i32.const 0))
(global $w (mut i32) (i32.const 0))
(global $count (mut i32) (i32.const 0))
(global $raw_end (mut i32) (i32.const 0))
(global $out_start (mut i32) (i32.const 0))
(global $out_n (mut i32) (i32.const 0))
(global $r_tsd (mut i32) (i32.const 0))
(global $r_od (mut i32) (i32.const 0))
(global $r_kp (mut i32) (i32.const 0))
(global $r_kl (mut i32) (i32.const 0))
(global $r_vp (mut i32) (i32.const 0))
(global $r_vl (mut i32) (i32.const 0))

(func $ensure (param $end i32)
  (local $need i32)
  (local.set $need (i32.sub (i32.shr_u (i32.add (local.get $end) (i32.const 65535)) (i32.const 16))
                            (memory.size)))
  (if (i32.gt_s (local.get $need) (i32.const 0))
    (then (if (i32.eq (memory.grow (local.get $need)) (i32.const -1)) (then unreachable)))))

(func $alloc (export "alloc") (param $n i32) (result i32)
  (global.set $heap (i32.and (i32.add (i32.add (i32.const 1024) (local.get $n)) (i32.const 7))
                             (i32.const -8)))
  (call $ensure (global.get $heap))
  (i32.const 1024))

(func $dealloc (export "dealloc") (param i32 i32))

;; ------------------------------------------------------------------------------------ reading
(func $be32 (param $p i32) (result i32)
  (i32.or (i32.or (i32.shl (i32.load8_u (local.get $p)) (i32.const 24))
                  (i32.shl (i32.load8_u offset=1 (local.get $p)) (i32.const 16)))
          (i32.or (i32.shl (i32.load8_u offset=2 (local.get $p)) (i32.const 8))
                  (i32.load8_u offset=3 (local.get $p)))))

(func $be16 (param $p i32) (result i32)
  (i32.or (i32.shl (i32.load8_u (local.get $p)) (i32.const 8)) (i32.load8_u offset=1 (local.get $p))))

(func $rb (result i32)
  (i32.load8_u (global.get $pos))
  (global.set $pos (i32.add (global.get $pos) (i32.const 1))))

;; a ZigZag LEB128 varint at $pos
(func $rvar (result i32)
  (local $u i32) (local $shift i32) (local $b i32)
  (block $done (loop $l
    (local.set $b (call $rb))
    (local.set $u (i32.or (local.get $u)
                          (i32.shl (i32.and (local.get $b) (i32.const 127)) (local.get $shift))))
    (local.set $shift (i32.add (local.get $shift) (i32.const 7)))
    (br_if $l (i32.and (local.get $b) (i32.const 128)))))
  (i32.xor (i32.shr_u (local.get $u) (i32.const 1))
           (i32.sub (i32.const 0) (i32.and (local.get $u) (i32.const 1)))))

;; the input's header: records start at $pos, $count of them, raw bytes end at $raw_end
(func $begin (param $ptr i32) (param $len i32)
  (global.set $raw_end (i32.add (i32.add (local.get $ptr) (i32.const 12))
                                (call $be32 (i32.add (local.get $ptr) (i32.const 8)))))
  (global.set $count (call $be32 (i32.add (local.get $ptr) (i32.const 12))))
  (global.set $pos (i32.add (local.get $ptr) (i32.const 16))))

;; the next record into $r_*: timestamp delta, offset delta, key (length -1: none), value
(func $next_record
  (local $end i32)
  (local.set $end (call $rvar))
  (local.set $end (i32.add (global.get $pos) (local.get $end)))
  (drop (call $rb))
  (global.set $r_tsd (call $rvar))
  (global.set $r_od (call $rvar))
  (if (i32.eq (call $rb) (i32.const 1))
    (then (global.set $r_kl (call $rvar))
          (global.set $r_kp (global.get $pos))
          (global.set $pos (i32.add (global.get $pos) (global.get $r_kl))))
    (else (global.set $r_kl (i32.const -1))))
  (global.set $r_vl (call $rvar))
  (global.set $r_vp (global.get $pos))
  (global.set $pos (local.get $end)))

;; 1 when bytes [hp, hp+hl) contain [np, np+nl)
(func $contains (param $hp i32) (param $hl i32) (param $np i32) (param $nl i32) (result i32)
  (local $i i32) (local $j i32)
  (block $no (loop $outer
    (br_if $no (i32.gt_s (i32.add (local.get $i) (local.get $nl)) (local.get $hl)))
    (local.set $j (i32.const 0))
    (block $mismatch (loop $inner
      (if (i32.ge_u (local.get $j) (local.get $nl)) (then (return (i32.const 1))))
      (br_if $mismatch (i32.ne (i32.load8_u (i32.add (i32.add (local.get $hp) (local.get $i)) (local.get $j)))
                               (i32.load8_u (i32.add (local.get $np) (local.get $j)))))
      (local.set $j (i32.add (local.get $j) (i32.const 1)))
      (br $inner)))
    (local.set $i (i32.add (local.get $i) (i32.const 1)))
    (br $outer)))
  (i32.const 0))

;; ------------------------------------------------------------------------------------ writing
(func $wb (param $b i32)
  (call $ensure (i32.add (global.get $w) (i32.const 1)))
  (i32.store8 (global.get $w) (local.get $b))
  (global.set $w (i32.add (global.get $w) (i32.const 1))))

(func $wvar (param $x i32)
  (local $u i32)
  (local.set $u (i32.xor (i32.shl (local.get $x) (i32.const 1)) (i32.shr_s (local.get $x) (i32.const 31))))
  (block $done (loop $l
    (if (i32.lt_u (local.get $u) (i32.const 128))
      (then (call $wb (local.get $u)) (br $done)))
    (call $wb (i32.or (i32.and (local.get $u) (i32.const 127)) (i32.const 128)))
    (local.set $u (i32.shr_u (local.get $u) (i32.const 7)))
    (br $l))))

(func $vsize (param $x i32) (result i32)
  (local $u i32) (local $n i32)
  (local.set $u (i32.xor (i32.shl (local.get $x) (i32.const 1)) (i32.shr_s (local.get $x) (i32.const 31))))
  (local.set $n (i32.const 1))
  (block $done (loop $l
    (br_if $done (i32.lt_u (local.get $u) (i32.const 128)))
    (local.set $u (i32.shr_u (local.get $u) (i32.const 7)))
    (local.set $n (i32.add (local.get $n) (i32.const 1)))
    (br $l)))
  (local.get $n))

(func $wcopy (param $p i32) (param $n i32)
  (call $ensure (i32.add (global.get $w) (local.get $n)))
  (memory.copy (global.get $w) (local.get $p) (local.get $n))
  (global.set $w (i32.add (global.get $w) (local.get $n))))

(func $w32 (param $x i32)
  (call $wb (i32.shr_u (local.get $x) (i32.const 24)))
  (call $wb (i32.and (i32.shr_u (local.get $x) (i32.const 16)) (i32.const 255)))
  (call $wb (i32.and (i32.shr_u (local.get $x) (i32.const 8)) (i32.const 255)))
  (call $wb (i32.and (local.get $x) (i32.const 255))))

;; Vec<Record>: the count is patched in by $out_finish
(func $out_begin (param $at i32)
  (global.set $w (local.get $at))
  (global.set $out_start (local.get $at))
  (global.set $out_n (i32.const 0))
  (call $w32 (i32.const 0)))

;; a record up to its value length; the caller then writes exactly $vl value bytes
(func $out_head (param $tsd i32) (param $od i32) (param $kp i32) (param $kl i32) (param $vl i32)
  (local $size i32)
  (local.set $size (i32.add (i32.add (i32.const 2) (call $vsize (local.get $tsd))) (call $vsize (local.get $od))))
  (if (i32.ge_s (local.get $kl) (i32.const 0))
    (then (local.set $size (i32.add (local.get $size)
                                    (i32.add (call $vsize (local.get $kl)) (local.get $kl))))))
  (local.set $size (i32.add (i32.add (local.get $size) (call $vsize (local.get $vl)))
                            (i32.add (local.get $vl) (i32.const 1))))
  (call $wvar (local.get $size))
  (call $wb (i32.const 0))
  (call $wvar (local.get $tsd))
  (call $wvar (local.get $od))
  (if (i32.ge_s (local.get $kl) (i32.const 0))
    (then (call $wb (i32.const 1)) (call $wvar (local.get $kl)) (call $wcopy (local.get $kp) (local.get $kl)))
    (else (call $wb (i32.const 0))))
  (call $wvar (local.get $vl))
  (global.set $out_n (i32.add (global.get $out_n) (i32.const 1))))

(func $out_tail (call $wb (i32.const 0)))

;; the current record, unchanged
(func $out_copy
  (call $out_head (global.get $r_tsd) (global.get $r_od) (global.get $r_kp) (global.get $r_kl) (global.get $r_vl))
  (call $wcopy (global.get $r_vp) (global.get $r_vl))
  (call $out_tail))

;; patch the count in, then Option<error> None
(func $out_finish
  (local $save i32)
  (local.set $save (global.get $w))
  (global.set $w (global.get $out_start))
  (call $w32 (global.get $out_n))
  (global.set $w (local.get $save))
  (call $wb (i32.const 0)))

(func $out_send (result i32)
  (call $copy_records (global.get $out_start) (i32.sub (global.get $w) (global.get $out_start)))
  (i32.const 0))
