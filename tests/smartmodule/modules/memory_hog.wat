;; hostile: a filter that grows its memory a page at a time until refused, then aborts (as a
;; Rust module does when its allocator gets no more memory)
(func (export "filter") (param i32 i32 i32) (result i32)
  (loop $more
    (br_if $more (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
  unreachable)
