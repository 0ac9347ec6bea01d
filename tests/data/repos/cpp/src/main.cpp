#include "shape.hpp"

int main() {
  geo::Square square(2.0);
  return static_cast<int>(square.area());
}
