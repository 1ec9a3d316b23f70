def count_primes_below(limit: int) -> int:
    """The bakes' example of CPU-bound work, the same trial division."""
    count = 0
    for candidate in range(2, limit):
        divisor = 2
        while divisor * divisor <= candidate and candidate % divisor:
            divisor += 1
        if divisor * divisor > candidate:
            count += 1
    return count
