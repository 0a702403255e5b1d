; formal export-smt e1 --query inc --proxy right --search-format e4m3 -o encodings/e1.inc.right.e4m3.smt2
; numbers=binary32 proxy=right order=sequential
; condition: 'the last node with a relevant kink has zero input (when its weight rows can move alone)' (necessary for inc)
; encoding: exact fixed-point bit-vector encoding, 2 variable(s) of e4m3
; space: 2 searched parameter(s) (0.weight[0,0], 1.weight[0,0]) in e4m3: w = 0 or 1/512 <= |w| <= 448 (subnormals allowed); 0 fixed
; status by z3 5.4.1
(set-info :smt-lib-version 2.6)
(set-info :source |formal export-smt e1 --query inc --proxy right --search-format e4m3 -o encodings/e1.inc.right.e4m3.smt2 numbers=binary32 proxy=right order=sequential|)
(set-info :category "industrial")
(set-info :status sat)
(set-logic QF_BV)
(declare-fun w0 () (_ BitVec 8))
(declare-fun w1 () (_ BitVec 8))
(assert (distinct #x80 w0))
(assert (not (and (= ((_ extract 6 3) w0) #xf) (= ((_ extract 2 0) w0) #b111))))
(assert (or (= ((_ extract 6 0) w0) #b0000000)
    (and (bvuge ((_ extract 6 0) w0) #b0000001)
         (bvule ((_ extract 6 0) w0) #b1111110))))
(assert (distinct #x80 w1))
(assert (not (and (= ((_ extract 6 3) w1) #xf) (= ((_ extract 2 0) w1) #b111))))
(assert (or (= ((_ extract 6 0) w1) #b0000000)
    (and (bvuge ((_ extract 6 0) w1) #b0000001)
         (bvule ((_ extract 6 0) w1) #b1111110))))
(assert (let ((a!1 (ite (= ((_ extract 6 3) w0) #x0)
                ((_ zero_extend 16) ((_ extract 2 0) w0))
                ((_ zero_extend 15) (concat #b1 ((_ extract 2 0) w0)))))
      (a!2 ((_ zero_extend 15)
             (ite (bvule ((_ extract 6 3) w0) #x1)
                  #x0
                  (bvsub ((_ extract 6 3) w0) #x1))))
      (a!5 (ite (= ((_ extract 6 3) w1) #x0)
                ((_ zero_extend 16) ((_ extract 2 0) w1))
                ((_ zero_extend 15) (concat #b1 ((_ extract 2 0) w1)))))
      (a!6 ((_ zero_extend 15)
             (ite (bvule ((_ extract 6 3) w1) #x1)
                  #x0
                  (bvsub ((_ extract 6 3) w1) #x1)))))
(let ((a!3 (ite (= ((_ extract 7 7) w0) #b1)
                (bvneg ((_ zero_extend 1) (bvshl a!1 a!2)))
                ((_ zero_extend 1) (bvshl a!1 a!2))))
      (a!13 (ite (= ((_ extract 7 7) w1) #b1)
                 (bvneg ((_ zero_extend 1) (bvshl a!5 a!6)))
                 ((_ zero_extend 1) (bvshl a!5 a!6)))))
(let ((a!4 (ite (= #b0000000000000000000 ((_ extract 18 0) a!3))
                true
                (ite (bvsge #b0000000000000000000 ((_ extract 18 0) a!3))
                     false
                     true)))
      (a!7 (ite (bvsge #b0000000000000000000 ((_ extract 18 0) a!3))
                (bvmul #b0000000000000000000 #b0000000001000000000)
                ((_ extract 18 0) a!3))))
(let ((a!8 (bvneg (bvmul ((_ zero_extend 18) (bvshl a!5 a!6))
                         ((_ sign_extend 18) a!7))))
      (a!14 (or (and a!4
                     (distinct #b0000000000000000000 ((_ extract 18 0) a!13)))
                (distinct #b0000000000000000000 a!7))))
(let ((a!9 (ite (= ((_ extract 7 7) w1) #b1)
                a!8
                (bvmul ((_ zero_extend 18) (bvshl a!5 a!6))
                       ((_ sign_extend 18) a!7)))))
(let ((a!10 ((_ sign_extend 17)
              (ite (= #b0000000000000000000000000000000000000 a!9)
                   #b01
                   (ite (bvsge #b0000000000000000000000000000000000000 a!9)
                        #b00
                        #b01))))
      (a!15 (and (= #b0000000000000000000000000000000000000 a!9)
                 a!14
                 (ite (= #b0000000000000000000000000000000000000 a!9)
                      true
                      (ite (bvsge #b0000000000000000000000000000000000000 a!9)
                           false
                           true))
                 true)))
(let ((a!11 (bvneg (bvmul ((_ zero_extend 0) (bvshl a!5 a!6)) a!10))))
(let ((a!12 (ite (= ((_ extract 7 7) w1) #b1)
                 a!11
                 (bvmul ((_ zero_extend 0) (bvshl a!5 a!6)) a!10))))
  (or (and (= #b0000000000000000000 ((_ extract 18 0) a!3))
           a!4
           (distinct #b0000000000000000000 a!12)
           (not a!15)
           false)
      (and a!15 (= #b0000000000000000000 a!7))))))))))))
(check-sat)
(exit)
