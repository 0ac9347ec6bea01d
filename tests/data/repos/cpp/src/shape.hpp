#pragma once

namespace geo {

/// A square with a side length.
class Square {
 public:
  explicit Square(double side) : side_(side) {}
  double area() const;
  double perimeter() const;

 private:
  double side_;
};

}  // namespace geo
