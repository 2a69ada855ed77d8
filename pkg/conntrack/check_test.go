package conntrack

import "fmt"

// check verifies the table's structure when nothing runs concurrently:
// every entry on the orig chains is on exactly one orig chain, in the right
// bucket, also on its reply chain, filed in the wheel, and not on the free
// list; the count matches.
func (t *Table) check() error {
	seenO := map[uint32]uint32{}
	for b := range t.headsO {
		n := 0
		for i := t.headsO[b]; i != 0; i = t.at(i).nextO {
			if n++; n > int(t.max)+1 {
				return fmt.Errorf("orig chain %d has a cycle", b)
			}
			if prev, dup := seenO[i]; dup {
				return fmt.Errorf("slot %d on orig chains %d and %d", i, prev, b)
			}
			seenO[i] = uint32(b)
			e := t.at(i)
			if t.bucket(&e.orig) != uint32(b) {
				return fmt.Errorf("slot %d on orig chain %d, hashes to %d", i, b, t.bucket(&e.orig))
			}
			if e.due == notFiled {
				return fmt.Errorf("slot %d linked but not filed", i)
			}
		}
	}
	seenR := map[uint32]bool{}
	for b := range t.headsR {
		n := 0
		for i := t.headsR[b]; i != 0; i = t.at(i).nextR {
			if n++; n > int(t.max)+1 {
				return fmt.Errorf("reply chain %d has a cycle", b)
			}
			if seenR[i] {
				return fmt.Errorf("slot %d twice on reply chains", i)
			}
			seenR[i] = true
			if _, ok := seenO[i]; !ok {
				return fmt.Errorf("slot %d on a reply chain only", i)
			}
		}
	}
	if len(seenR) != len(seenO) {
		return fmt.Errorf("%d on orig chains, %d on reply chains", len(seenO), len(seenR))
	}
	for i, n := t.freeHead, 0; i != 0; i = t.at(i).nextO {
		if n++; n > int(t.max)+1 {
			return fmt.Errorf("free list cycle")
		}
		if _, ok := seenO[i]; ok {
			return fmt.Errorf("slot %d linked and free", i)
		}
	}
	filed := 0
	for s := range t.wheel {
		for i := t.wheel[s].head; i != 0; i = t.at(i).next {
			filed++
			if _, ok := seenO[i]; !ok {
				return fmt.Errorf("slot %d filed but not linked", i)
			}
			if filed > int(t.max)+1 {
				return fmt.Errorf("wheel cycle")
			}
		}
	}
	if filed != len(seenO) || int(t.count.Load()) != len(seenO) {
		return fmt.Errorf("filed %d, linked %d, count %d", filed, len(seenO), t.count.Load())
	}
	return nil
}
