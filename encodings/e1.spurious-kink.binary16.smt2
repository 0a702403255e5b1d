; formal export-smt e1 --query spurious-kink --proxy pytorch --numbers binary16 -o encodings/e1.spurious-kink.binary16.smt2
; numbers=binary16 proxy=pytorch order=sequential
; condition: 'yhat == c in sequential order while the exact y != c'
; encoding: fp.mul/fp.add RNE in binary16, sequential order, against the exact bit-vector encoding; 2 variable(s)
; space: 2 searched parameter(s) (0.weight[0,0], 1.weight[0,0]) in binary16: w = 0 or 2^-14 <= |w| <= 65504 (no subnormals); 0 fixed
; status by z3 5.4.1
(set-info :smt-lib-version 2.6)
(set-info :source |formal export-smt e1 --query spurious-kink --proxy pytorch --numbers binary16 -o encodings/e1.spurious-kink.binary16.smt2 numbers=binary16 proxy=pytorch order=sequential|)
(set-info :category "industrial")
(set-info :status sat)
(set-logic QF_BVFP)
(declare-fun w0 () (_ BitVec 16))
(declare-fun w1 () (_ BitVec 16))
(assert (distinct #x8000 w0))
(assert (not (fp.isNaN ((_ to_fp 5 11) w0))))
(assert (not (fp.isInfinite ((_ to_fp 5 11) w0))))
(assert (not (fp.isSubnormal ((_ to_fp 5 11) w0))))
(assert (let ((a!1 (and (fp.geq (fp.abs ((_ to_fp 5 11) w0))
                        (fp #b0 #b00001 #b0000000000))
                (fp.leq (fp.abs ((_ to_fp 5 11) w0))
                        (fp #b0 #b11110 #b1111111111)))))
  (or (fp.isZero ((_ to_fp 5 11) w0)) a!1)))
(assert (distinct #x8000 w1))
(assert (not (fp.isNaN ((_ to_fp 5 11) w1))))
(assert (not (fp.isInfinite ((_ to_fp 5 11) w1))))
(assert (not (fp.isSubnormal ((_ to_fp 5 11) w1))))
(assert (let ((a!1 (and (fp.geq (fp.abs ((_ to_fp 5 11) w1))
                        (fp #b0 #b00001 #b0000000000))
                (fp.leq (fp.abs ((_ to_fp 5 11) w1))
                        (fp #b0 #b11110 #b1111111111)))))
  (or (fp.isZero ((_ to_fp 5 11) w1)) a!1)))
(assert (let ((a!1 (ite (= ((_ extract 14 10) w0) #b00000)
                ((_ zero_extend 31) ((_ extract 9 0) w0))
                ((_ zero_extend 30) (concat #b1 ((_ extract 9 0) w0)))))
      (a!2 ((_ zero_extend 36)
             (ite (bvule ((_ extract 14 10) w0) #b00001)
                  #b00000
                  (bvsub ((_ extract 14 10) w0) #b00001))))
      (a!5 (ite (fp.leq (fp.mul roundNearestTiesToEven
                                (fp #b0 #b01111 #b0000000000)
                                ((_ to_fp 5 11) w0))
                        (_ +zero 5 11))
                (_ +zero 5 11)
                (fp.mul roundNearestTiesToEven
                        (fp #b0 #b01111 #b0000000000)
                        ((_ to_fp 5 11) w0))))
      (a!6 (ite (= ((_ extract 14 10) w1) #b00000)
                ((_ zero_extend 31) ((_ extract 9 0) w1))
                ((_ zero_extend 30) (concat #b1 ((_ extract 9 0) w1)))))
      (a!7 ((_ zero_extend 36)
             (ite (bvule ((_ extract 14 10) w1) #b00001)
                  #b00000
                  (bvsub ((_ extract 14 10) w1) #b00001)))))
(let ((a!3 (ite (= ((_ extract 15 15) w0) #b1)
                (bvneg ((_ zero_extend 1) (bvshl a!1 a!2)))
                ((_ zero_extend 1) (bvshl a!1 a!2)))))
(let ((a!4 (and (fp.eq (fp.mul roundNearestTiesToEven
                               (fp #b0 #b01111 #b0000000000)
                               ((_ to_fp 5 11) w0))
                       (_ +zero 5 11))
                (distinct #b00000000000000000000000000000000000000000
                          ((_ extract 40 0) a!3))))
      (a!8 ((_ sign_extend 40)
             (ite (bvsge #b00000000000000000000000000000000000000000
                         ((_ extract 40 0) a!3))
                  (bvmul #b00000000000000000000000000000000000000000
                         #b00000000000000001000000000000000000000000)
                  ((_ extract 40 0) a!3)))))
(let ((a!9 (bvneg (bvmul ((_ zero_extend 40) (bvshl a!6 a!7)) a!8))))
(let ((a!10 (ite (= ((_ extract 15 15) w1) #b1)
                 a!9
                 (bvmul ((_ zero_extend 40) (bvshl a!6 a!7)) a!8))))
(let ((a!11 (and (fp.eq (fp.mul roundNearestTiesToEven a!5 ((_ to_fp 5 11) w1))
                        (_ +zero 5 11))
                 (distinct #b000000000000000000000000000000000000000000000000000000000000000000000000000000000
                           a!10))))
  (or a!4 a!11))))))))
(check-sat)
(exit)
