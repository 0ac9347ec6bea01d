def split_csv_line(line):
    """Split one CSV line on commas; double-quoted fields may hold commas and "" for a quote."""
    fields = []
    field = ""
    in_quotes = False
    i = 0
    while i < len(line):
        ch = line[i]
        if in_quotes and ch == '"' and line[i + 1:i + 2] == '"':
            field += '"'
            i += 1
        elif ch == '"':
            in_quotes = not in_quotes
        elif ch == "," and not in_quotes:
            fields.append(field)
            field = ""
        else:
            field += ch
        i += 1
    fields.append(field)
    return fields
# --- tests ---
assert split_csv_line("a,b,c") == ["a", "b", "c"]
assert split_csv_line('1,"hello, world",3') == ["1", "hello, world", "3"]
assert split_csv_line('"say ""hi""",x') == ['say "hi"', "x"]
assert split_csv_line('"x"",y",z') == ['x",y', "z"]
assert split_csv_line("a,,b,") == ["a", "", "b", ""]
assert split_csv_line('""') == [""]
assert split_csv_line("") == [""]
