"""R_cons on clauses: bindings stop at punctuation, a value moved to another entity is a conflict,
and a grounded derivation across commas stays consistent."""

from nemo_vtp.rewards.consistency import consistency, extract_items


def test_a_binding_stops_at_a_comma():
    items = extract_items("AB = AC = 5, triangle ABC is isosceles.")
    assert ("", "triangle") not in items.values  # the 5 belongs to AC, not to the triangle
    assert items.values[("", "AC")] == [5.0]
    colours = extract_items("The bar is red, circles are drawn.").colours
    assert "circle" not in colours and colours["bar"] == {"red"}


def test_counting_the_triangles_is_not_a_conflict_with_a_side_length():
    desc = "AB = AC = 5, triangles ABD and ACD are congruent."
    assert consistency("The 2 triangles ABD and ACD are congruent, so BD = CD.", "", desc, "Why?") == 0.5


def test_moving_a_value_to_another_entity_is_a_conflict():
    assert consistency("EF = 12, so DE + EF = 24", "24", "DE = 12 and EF = 9.", "What is DE + EF?") == 0.0
    assert consistency("angle A = 60°, so angle C = 90°", "90", "angle A = 30°, angle B = 60°.", "Find angle C.") == 0.0
    desc = "The red bar is 7, the blue bar is 5."
    assert consistency("The red bar is 5, the blue bar is 7, so 5 + 7 = 12.", "12", desc, "What is the sum?") == 0.0


def test_a_grounded_derivation_across_commas_stays_consistent():
    desc = "The red bar is 7, the blue bar is 5."
    assert consistency("The red bar is 7, the blue bar is 5, so 7 + 5 = 12.", "12", desc, "What is the sum?") == 1.0
    assert consistency("AB = 5, BC = 7, so AB + BC = 12.", "12", "AB = 5, BC = 7.", "What is AB + BC?") == 1.0
    think = "AB = 5 and AC = 5, BC = 6, so the perimeter = 5 + 5 + 6 = 16."
    assert consistency(think, "16", "AB = AC = 5, triangle ABC is isosceles.", "What is the perimeter if BC = 6?") == 1.0
