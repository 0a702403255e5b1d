; formal export-smt tiny-mlp --query spurious-kink --proxy pytorch --numbers binary32 --fix 0.weight --fix 1.weight --fix 1.bias -o encodings/tiny-mlp.spurious-kink.binary32.fixed-0weight-1weight-1bias.smt2
; numbers=binary32 proxy=pytorch order=sequential
; condition: 'yhat == c in sequential order while the exact y != c'
; encoding: fp.mul/fp.add RNE in binary32, sequential order, against the exact bit-vector encoding; 3 variable(s)
; space: 3 searched parameter(s) (0.bias[0], 0.bias[1], 0.bias[2]) in binary32: w = 0 or 2^-16 <= |w| <= 2^16 (no subnormals); 10 fixed
; status by z3 5.4.1
(set-info :smt-lib-version 2.6)
(set-info :source |formal export-smt tiny-mlp --query spurious-kink --proxy pytorch --numbers binary32 --fix 0.weight --fix 1.weight --fix 1.bias -o encodings/tiny-mlp.spurious-kink.binary32.fixed-0weight-1weight-1bias.smt2 numbers=binary32 proxy=pytorch order=sequential|)
(set-info :category "industrial")
(set-info :status unsat)
(set-logic QF_BVFP)
(declare-fun w6 () (_ BitVec 32))
(declare-fun w7 () (_ BitVec 32))
(declare-fun w8 () (_ BitVec 32))
(assert (distinct #x80000000 w6))
(assert (not (fp.isNaN ((_ to_fp 8 24) w6))))
(assert (not (fp.isInfinite ((_ to_fp 8 24) w6))))
(assert (not (fp.isSubnormal ((_ to_fp 8 24) w6))))
(assert (let ((a!1 (and (fp.geq (fp.abs ((_ to_fp 8 24) w6))
                        (fp #b0 #x6f #b00000000000000000000000))
                (fp.leq (fp.abs ((_ to_fp 8 24) w6))
                        (fp #b0 #x8f #b00000000000000000000000)))))
  (or (fp.isZero ((_ to_fp 8 24) w6)) a!1)))
(assert (distinct #x80000000 w7))
(assert (not (fp.isNaN ((_ to_fp 8 24) w7))))
(assert (not (fp.isInfinite ((_ to_fp 8 24) w7))))
(assert (not (fp.isSubnormal ((_ to_fp 8 24) w7))))
(assert (let ((a!1 (and (fp.geq (fp.abs ((_ to_fp 8 24) w7))
                        (fp #b0 #x6f #b00000000000000000000000))
                (fp.leq (fp.abs ((_ to_fp 8 24) w7))
                        (fp #b0 #x8f #b00000000000000000000000)))))
  (or (fp.isZero ((_ to_fp 8 24) w7)) a!1)))
(assert (distinct #x80000000 w8))
(assert (not (fp.isNaN ((_ to_fp 8 24) w8))))
(assert (not (fp.isInfinite ((_ to_fp 8 24) w8))))
(assert (not (fp.isSubnormal ((_ to_fp 8 24) w8))))
(assert (let ((a!1 (and (fp.geq (fp.abs ((_ to_fp 8 24) w8))
                        (fp #b0 #x6f #b00000000000000000000000))
                (fp.leq (fp.abs ((_ to_fp 8 24) w8))
                        (fp #b0 #x8f #b00000000000000000000000)))))
  (or (fp.isZero ((_ to_fp 8 24) w8)) a!1)))
(assert (let ((a!1 (fp.eq (fp.add roundNearestTiesToEven
                          (fp.add roundNearestTiesToEven
                                  (fp.mul roundNearestTiesToEven
                                          (fp #b0 #x7e #b00000000000000000000000)
                                          (fp #b0 #x7f #b00000000000000000000000))
                                  (fp.mul roundNearestTiesToEven
                                          (fp #b1 #x7f #b00000000000000000000000)
                                          (fp #b0 #x80 #b00000000000000000000000)))
                          ((_ to_fp 8 24) w6))
                  (_ +zero 8 24)))
      (a!2 (ite (= ((_ extract 30 23) w6) #x00)
                ((_ zero_extend 34) ((_ extract 22 0) w6))
                ((_ zero_extend 33) (concat #b1 ((_ extract 22 0) w6)))))
      (a!3 ((_ zero_extend 49)
             (ite (bvule ((_ extract 30 23) w6) #x6f)
                  #x00
                  (bvsub ((_ extract 30 23) w6) #x6f))))
      (a!6 (fp.eq (fp.add roundNearestTiesToEven
                          (fp.add roundNearestTiesToEven
                                  (fp.mul roundNearestTiesToEven
                                          (fp #b0 #x7e #b00000000000000000000000)
                                          (fp #b0 #x7e #b10000000000000000000000))
                                  (fp.mul roundNearestTiesToEven
                                          (fp #b1 #x7f #b00000000000000000000000)
                                          (fp #b0 #x7e #b00000000000000000000000)))
                          ((_ to_fp 8 24) w7))
                  (_ +zero 8 24)))
      (a!7 (ite (= ((_ extract 30 23) w7) #x00)
                ((_ zero_extend 34) ((_ extract 22 0) w7))
                ((_ zero_extend 33) (concat #b1 ((_ extract 22 0) w7)))))
      (a!8 ((_ zero_extend 49)
             (ite (bvule ((_ extract 30 23) w7) #x6f)
                  #x00
                  (bvsub ((_ extract 30 23) w7) #x6f))))
      (a!11 (fp.eq (fp.add roundNearestTiesToEven
                           (fp.add roundNearestTiesToEven
                                   (fp.mul roundNearestTiesToEven
                                           (fp #b0 #x7e #b00000000000000000000000)
                                           (fp #b1 #x7f #b00000000000000000000000))
                                   (fp.mul roundNearestTiesToEven
                                           (fp #b1 #x7f #b00000000000000000000000)
                                           (fp #b0 #x7c #b00000000000000000000000)))
                           ((_ to_fp 8 24) w8))
                   (_ +zero 8 24)))
      (a!12 (ite (= ((_ extract 30 23) w8) #x00)
                 ((_ zero_extend 34) ((_ extract 22 0) w8))
                 ((_ zero_extend 33) (concat #b1 ((_ extract 22 0) w8)))))
      (a!13 ((_ zero_extend 49)
              (ite (bvule ((_ extract 30 23) w8) #x6f)
                   #x00
                   (bvsub ((_ extract 30 23) w8) #x6f)))))
(let ((a!4 (ite (= ((_ extract 31 31) w6) #b1)
                (bvneg ((_ zero_extend 1) (bvshl a!2 a!3)))
                ((_ zero_extend 1) (bvshl a!2 a!3))))
      (a!9 (ite (= ((_ extract 31 31) w7) #b1)
                (bvneg ((_ zero_extend 1) (bvshl a!7 a!8)))
                ((_ zero_extend 1) (bvshl a!7 a!8))))
      (a!14 (ite (= ((_ extract 31 31) w8) #b1)
                 (bvneg ((_ zero_extend 1) (bvshl a!12 a!13)))
                 ((_ zero_extend 1) (bvshl a!12 a!13)))))
(let ((a!5 (and a!1
                (distinct #b000000000000000000000000000000000000000000000000000000000
                          (bvadd (bvmul #b111111111111111111111111111111111111111111111111111111101
                                        #b000000000000000000100000000000000000000000000000000000000)
                                 ((_ extract 56 0) a!4)))))
      (a!10 (and a!6
                 (distinct #b000000000000000000000000000000000000000000000000000000000
                           (bvadd (bvmul #b111111111111111111111111111111111111111111111111111111111
                                         #b000000000000000000001000000000000000000000000000000000000)
                                  ((_ extract 56 0) a!9)))))
      (a!15 (and a!11
                 (distinct #b000000000000000000000000000000000000000000000000000000000
                           (bvadd (bvmul #b111111111111111111111111111111111111111111111111111111011
                                         #b000000000000000000001000000000000000000000000000000000000)
                                  ((_ extract 56 0) a!14))))))
  (or a!5 a!10 a!15)))))
(check-sat)
(exit)
