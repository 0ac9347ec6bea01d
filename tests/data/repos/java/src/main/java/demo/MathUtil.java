package demo;

public final class MathUtil {
    /** Square a number. */
    public static int square(int x) {
        return x * x;
    }
}
