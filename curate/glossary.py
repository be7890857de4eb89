"""What the report's figures mean: shown beside each figure and at the end of `report.html`."""

GLOSSARY = {
    "kept": "documents (or characters) out / in for that stage",
    "mac": "mean adjacent cosine similarity: the average similarity of consecutive documents along the "
           "ordered path (higher: neighbours in the path are more related)",
    "mac_random_order": "the same for the documents in a random order: the baseline the path should beat",
    "bound_ratio": "the path's total adjacent similarity divided by an upper bound on any path's (U2: half "
                   "the sum of each document's two best kNN similarities); 1.0 is a path that cannot be beaten",
    "knn_edge_fraction": "share of adjacent pairs in the path that are k-nearest-neighbour edges",
    "label_agreement": "share of adjacent pairs with the same topic label (when the input has labels)",
    "label_chance": "the same for a random order: sum of squared label shares",
    "coherence": "mean pairwise cosine similarity of the documents inside a packed window, averaged over "
                 "windows with two or more documents",
    "coherence_random": "the same for windows of randomly chosen documents with the same sizes",
    "pad_fraction": "padding tokens / all tokens in the packed windows",
    "split_documents": "documents cut across two or more windows (concat mode)",
}
