; formal export-smt lemma3 --query spurious-kink --proxy pytorch --numbers binary32 -o encodings/lemma3.spurious-kink.binary32.smt2
; numbers=binary32 proxy=pytorch order=sequential
; condition: 'yhat == c in sequential order while the exact y != c'
; encoding: fp.mul/fp.add RNE in binary32, sequential order, against the exact bit-vector encoding; 1 variable(s)
; space: 1 searched parameter(s) (0.bias[0]) in binary32: w = 0 or 2^-16 <= |w| <= 2^16 (no subnormals); 0 fixed
; status by z3 5.4.1
(set-info :smt-lib-version 2.6)
(set-info :source |formal export-smt lemma3 --query spurious-kink --proxy pytorch --numbers binary32 -o encodings/lemma3.spurious-kink.binary32.smt2 numbers=binary32 proxy=pytorch order=sequential|)
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
                  (bvsub ((_ extract 30 23) w0) #x6f)))))
(let ((a!3 (ite (= ((_ extract 31 31) w0) #b1)
                (bvneg ((_ zero_extend 1) (bvshl a!1 a!2)))
                ((_ zero_extend 1) (bvshl a!1 a!2)))))
(let ((a!4 (and (fp.eq (fp.add roundNearestTiesToEven
                               (fp.mul roundNearestTiesToEven
                                       (fp #b0 #x80 #b10000000000000000000000)
                                       (fp #b0 #x7f #b00000000000000000000000))
                               ((_ to_fp 8 24) w0))
                       (fp #b1 #x80 #b10000000000000000000000))
                (distinct #b111111111111111101000000000000000000000000000000000000000
                          (bvadd (bvmul #b000000000000000000000000000000000000000000000000000000011
                                        #b000000000000000001000000000000000000000000000000000000000)
                                 ((_ extract 56 0) a!3)))))
      (a!5 (and (fp.eq (fp.add roundNearestTiesToEven
                               (fp.mul roundNearestTiesToEven
                                       (fp #b0 #x80 #b10000000000000000000000)
                                       (fp #b0 #x7f #b00000000000000000000000))
                               ((_ to_fp 8 24) w0))
                       (fp #b0 #x80 #b10000000000000000000000))
                (distinct #b000000000000000011000000000000000000000000000000000000000
                          (bvadd (bvmul #b000000000000000000000000000000000000000000000000000000011
                                        #b000000000000000001000000000000000000000000000000000000000)
                                 ((_ extract 56 0) a!3)))))
      (a!6 (and (fp.eq (fp.add roundNearestTiesToEven
                               (fp.mul roundNearestTiesToEven
                                       (fp #b1 #x80 #b10000000000000000000000)
                                       (fp #b0 #x7f #b00000000000000000000000))
                               ((_ to_fp 8 24) w0))
                       (fp #b1 #x80 #b10000000000000000000000))
                (distinct #b111111111111111101000000000000000000000000000000000000000
                          (bvadd (bvmul #b111111111111111111111111111111111111111111111111111111101
                                        #b000000000000000001000000000000000000000000000000000000000)
                                 ((_ extract 56 0) a!3)))))
      (a!7 (and (fp.eq (fp.add roundNearestTiesToEven
                               (fp.mul roundNearestTiesToEven
                                       (fp #b1 #x80 #b10000000000000000000000)
                                       (fp #b0 #x7f #b00000000000000000000000))
                               ((_ to_fp 8 24) w0))
                       (fp #b0 #x80 #b10000000000000000000000))
                (distinct #b000000000000000011000000000000000000000000000000000000000
                          (bvadd (bvmul #b111111111111111111111111111111111111111111111111111111101
                                        #b000000000000000001000000000000000000000000000000000000000)
                                 ((_ extract 56 0) a!3))))))
  (or a!4 a!5 a!6 a!7)))))
(check-sat)
(exit)
