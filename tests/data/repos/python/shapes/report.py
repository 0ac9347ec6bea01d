"""Reports about shapes."""
from shapes.geometry import Polygon, distance


def longest_side(polygon: Polygon) -> float:
    """The longest side of a polygon."""
    sides = [distance(p, q) for p, q in zip(polygon.points, polygon.points[1:])]
    return max(sides)


def describe(polygon):
    """One line about the polygon."""
    raise NotImplementedError


def area(polygon):
    ...
