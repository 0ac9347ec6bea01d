package demo;

import java.util.List;

public class Calc {
    public int sumOfSquares(List<Integer> xs) {
        int total = 0;
        for (int x : xs) {
            total += MathUtil.square(x);
        }
        return total;
    }

    public int cube(int x) {
        throw new UnsupportedOperationException();
    }

    public Calc() {}
}
