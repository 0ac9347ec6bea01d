"""Geometry helpers."""
import math


def distance(a, b):
    """Euclidean distance between two points."""
    return math.hypot(a[0] - b[0], a[1] - b[1])


class Polygon:
    """A closed polygon."""

    def __init__(self, points):
        self.points = list(points)

    def perimeter(self):
        """Sum of the side lengths."""
        total = 0.0
        # dcode: fill add up the sides with distance
        return total

    def vertex_count(self):
        return len(self.points)
