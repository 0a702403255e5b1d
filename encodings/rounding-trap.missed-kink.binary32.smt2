; formal export-smt rounding-trap --query missed-kink --proxy pytorch --numbers binary32 -o encodings/rounding-trap.missed-kink.binary32.smt2
; numbers=binary32 proxy=pytorch order=sequential
; condition: 'the exact y == c while yhat != c (sequential order)'
; encoding: fp.mul/fp.add RNE in binary32, sequential order, against the exact bit-vector encoding; 1 variable(s)
; space: 1 searched parameter(s) (0.weight[0,0]) in binary32: w = 0 or 2^-16 <= |w| <= 2^16 (no subnormals); 0 fixed
; status by z3 5.4.1
(set-info :smt-lib-version 2.6)
(set-info :source |formal export-smt rounding-trap --query missed-kink --proxy pytorch --numbers binary32 -o encodings/rounding-trap.missed-kink.binary32.smt2 numbers=binary32 proxy=pytorch order=sequential|)
(set-info :category "industrial")
(set-info :status unsat)
(set-logic QF_BVFP)
(declare-fun w0 () (_ BitVec 32))
(assert (distinct #x80000000 w0))
(assert (not (fp.isNaN ((_ to_fp 8 24) w0))))
(assert (not (fp.isInfinite ((_ to_fp 8 24) w0))))
(assert (not (fp.isSubnormal ((_ to_fp 8 24) w0))))
(assert (let ((a!1 (and (fp.geq (fp.abs ((_ to_fp 8 24) w0))
                        (fp #b0 #x6f #b00000000000000000000000))
                (fp.leq (fp.abs ((_ to_fp 8 24) w0))
                        (fp #b0 #x8f #b00000000000000000000000)))))
  (or (fp.isZero ((_ to_fp 8 24) w0)) a!1)))
(assert (let ((a!1 (ite (= ((_ extract 30 23) w0) #x00)
                ((_ zero_extend 34) ((_ extract 22 0) w0))
                ((_ zero_extend 33) (concat #b1 ((_ extract 22 0) w0)))))
      (a!2 ((_ zero_extend 49)
             (ite (bvule ((_ extract 30 23) w0) #x6f)
                  #x00
                  (bvsub ((_ extract 30 23) w0) #x6f))))
      (a!4 (not (fp.eq (fp.mul roundNearestTiesToEven
                               (fp #b0 #x82 #b01000000000000000000000)
                               ((_ to_fp 8 24) w0))
                       (fp #b1 #x7f #b00000000000000000000000))))
      (a!5 (not (fp.isInfinite (fp.mul roundNearestTiesToEven
                                       (fp #b0 #x82 #b01000000000000000000000)
                                       ((_ to_fp 8 24) w0)))))
      (a!6 (not (fp.isNaN (fp.mul roundNearestTiesToEven
                                  (fp #b0 #x82 #b01000000000000000000000)
                                  ((_ to_fp 8 24) w0)))))
      (a!8 (not (fp.eq (fp.mul roundNearestTiesToEven
                               (fp #b0 #x82 #b01000000000000000000000)
                               ((_ to_fp 8 24) w0))
                       (fp #b0 #x7f #b00000000000000000000000)))))
(let ((a!3 (ite (= ((_ extract 31 31) w0) #b1)
                (bvneg ((_ zero_extend 1) (bvshl a!1 a!2)))
                ((_ zero_extend 1) (bvshl a!1 a!2)))))
(let ((a!7 (and (= #xfffff8000000000
                   (bvmul ((_ sign_extend 2) a!3) #x00000000000000a))
                a!4
                (and a!5 a!6)))
      (a!9 (and (= #x000008000000000
                   (bvmul ((_ sign_extend 2) a!3) #x00000000000000a))
                a!8
                (and a!5 a!6))))
  (or a!7 a!9)))))
(check-sat)
(exit)
