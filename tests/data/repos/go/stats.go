package main

// Sum adds up the numbers.
func Sum(xs []int) int {
	total := 0
	for _, x := range xs {
		total += x
	}
	return total
}

// Stats accumulates numbers.
type Stats struct {
	values []int
}

// Add records one value.
func (s *Stats) Add(x int) {
	s.values = append(s.values, x)
}
