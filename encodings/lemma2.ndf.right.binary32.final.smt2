; formal export-smt lemma2 --query ndf --proxy right --search-format binary32 --after-search 20 -o encodings/lemma2.ndf.right.binary32.final.smt2
; numbers=binary32 proxy=right order=sequential
; condition: 'some kink is relevant (AD adjoint non-zero, tangent possibly non-zero)' (necessary for ndf: Lemma Z)
; encoding: exact fixed-point bit-vector encoding, 1 variable(s) of binary32
; space: 1 searched parameter(s) (0.weight[0,0]) in binary32: w = 0 or 2^-126 <= |w| <= 0x1.fffffep+127 (no subnormals); 0 fixed
; status by z3 5.4.1
; after the search: 1 verified non-witness model(s) blocked
(set-info :smt-lib-version 2.6)
(set-info :source |formal export-smt lemma2 --query ndf --proxy right --search-format binary32 --after-search 20 -o encodings/lemma2.ndf.right.binary32.final.smt2 numbers=binary32 proxy=right order=sequential|)
(set-info :category "industrial")
(set-info :status unsat)
(set-logic QF_BVFP)
(declare-fun w0 () (_ BitVec 32))
(assert (distinct #x80000000 w0))
(assert (not (fp.isNaN ((_ to_fp 8 24) w0))))
(assert (not (fp.isInfinite ((_ to_fp 8 24) w0))))
(assert (not (fp.isSubnormal ((_ to_fp 8 24) w0))))
(assert (let ((a!1 (and (fp.geq (fp.abs ((_ to_fp 8 24) w0))
                        (fp #b0 #x01 #b00000000000000000000000))
                (fp.leq (fp.abs ((_ to_fp 8 24) w0))
                        (fp #b0 #xfe #b11111111111111111111111)))))
  (or (fp.isZero ((_ to_fp 8 24) w0)) a!1)))
(assert (let ((a!1 (ite (= ((_ extract 30 23) w0) #x00)
                ((_ zero_extend 255) ((_ extract 22 0) w0))
                ((_ zero_extend 254) (concat #b1 ((_ extract 22 0) w0)))))
      (a!2 ((_ zero_extend 270)
             (ite (bvule ((_ extract 30 23) w0) #x01)
                  #x00
                  (bvsub ((_ extract 30 23) w0) #x01)))))
(let ((a!3 (ite (= ((_ extract 31 31) w0) #b1)
                (bvneg ((_ zero_extend 1) (bvshl a!1 a!2)))
                ((_ zero_extend 1) (bvshl a!1 a!2))))
      (a!5 (ite (= (bvnot ((_ extract 31 31) w0)) #b1)
                (bvneg ((_ zero_extend 1) (bvshl a!1 a!2)))
                ((_ zero_extend 1) (bvshl a!1 a!2)))))
(let ((a!4 (ite (= #b00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
                   ((_ extract 277 0) a!3))
                true
                (ite (bvsge #b00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
                            ((_ extract 277 0) a!3))
                     false
                     true)))
      (a!6 (ite (= #b00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
                   ((_ extract 277 0) a!5))
                true
                (ite (bvsge #b00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
                            ((_ extract 277 0) a!5))
                     false
                     true))))
  (or (and (= #b00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
              ((_ extract 277 0) a!3))
           a!4
           true)
      (and (= #b00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
              ((_ extract 277 0) a!5))
           a!6
           true))))))
(assert (distinct #x00000000 w0))
(check-sat)
(exit)
