package main

import "fmt"

func main() {
	fmt.Println(Sum([]int{1, 2, 3}), Mean([]int{1, 2, 3}))
}

// Mean is the average of the numbers.
func Mean(xs []int) float64 {
	panic("not implemented")
}
