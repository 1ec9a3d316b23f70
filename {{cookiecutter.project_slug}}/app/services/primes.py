def count_primes_below(limit: int) -> int:
    """Count the primes below `limit` by trial division.

    Deliberately naive: this is the project's example of CPU-bound pure-Python work, so it must
    stay CPU-heavy (a sieve would hide what it is there to show). Run it in the process pool.
    """
    count = 0
    for candidate in range(2, limit):
        divisor = 2
        while divisor * divisor <= candidate and candidate % divisor:
            divisor += 1
        if divisor * divisor > candidate:
            count += 1
    return count
